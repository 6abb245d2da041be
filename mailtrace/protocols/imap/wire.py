"""How IMAP data is written on the wire (RFC 3501 §4) and cut back into lines and literals.

``nstring``/``astring`` choose between NIL, a quoted string and a literal: "a quoted string
... excluding CR and LF" (§4.3), and 8-bit data only in literals (§4.3.1).  ``split_lines``
is the literal-aware framing used for server responses (by the core, to make one event per
line and per literal) and by the observer on both sides: a line that ends in ``{n}`` CRLF is
followed by exactly n octets of literal data (§4.3, §7.5).
"""

from __future__ import annotations

import re

# RFC 3501 §4.3: quoted strings hold 7-bit text without CR/LF; longer text goes as a literal.
MAX_QUOTED = 1000
_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")
_SAFE_QUOTED = re.compile(rb"^[\x20-\x7e]*\Z")


def quote(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def string(value: str | bytes) -> bytes:
    """A quoted string when it can be one, otherwise a literal (RFC 3501 §4.3)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and _SAFE_QUOTED.match(data):
        return quote(data)
    return literal(data)


def nstring(value: str | bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def astring(value: str) -> bytes:
    """A mailbox name or other astring: an atom if safe, else quoted or literal."""
    data = value.encode("utf-8")
    if data and re.match(rb"^[!#$&'+-\[^-z|}~]+\Z", data) and data.upper() != b"NIL":
        return data
    return string(data)


def literal_size(line: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronizing) if ``line`` ends with a literal announcement ``{n}`` CRLF."""
    m = _LITERAL_AT_END.search(line)
    if not m:
        return None
    return int(m.group(1)), m.group(2) == b"+"


def with_literal_size(line: bytes, size: int) -> bytes:
    """``line`` with the literal announced at its end saying ``size`` octets instead."""
    return _LITERAL_AT_END.sub(lambda m: b"{%d%s}\r\n" % (size, m.group(2)), line)


def split_lines(data: bytes) -> list[tuple[str, bytes]]:
    """Cut complete response bytes into ("line", bytes) and ("literal", bytes) pieces."""
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(data)
    while i < n:
        j = data.find(b"\n", i)
        if j < 0:
            out.append(("line", data[i:]))
            break
        line = data[i:j + 1]
        out.append(("line", line))
        i = j + 1
        lit = literal_size(line)
        if lit is not None and (i < n or lit[0] == 0):  # (a piece may end at the announcement)
            out.append(("literal", data[i:i + lit[0]]))
            i += lit[0]
    return out


def failure(exc: Exception) -> str:
    """What went wrong, on one line: the exception's type and message (for the transcript)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())
