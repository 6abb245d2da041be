"""How IMAP data is written on the wire (RFC 3501 §4) and cut back into lines and literals.

``nstring``/``astring`` choose between NIL, a quoted string and a literal: "a quoted string
... excluding CR and LF" (§4.3), and 8-bit data only in literals (§4.3.1).  ``split_lines``
cuts a response the core sends into its lines and literals (one event each) with the same
framer the observer uses (``protocols.lines``).
"""

from __future__ import annotations

import re

from mailtrace.protocols.lines import LineReader, Literal, literal_announced

# RFC 3501 §4.3: quoted strings hold 7-bit text without CR/LF; longer text goes as a literal.
MAX_QUOTED = 1000
_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")  # (as lines.literal_announced)
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


def with_literal_size(line: bytes, size: int) -> bytes:
    """``line`` with the literal announced at its end saying ``size`` octets instead."""
    return _LITERAL_AT_END.sub(lambda m: b"{%d%s}\r\n" % (size, m.group(2)), line)


def split_lines(data: bytes) -> list[tuple[str, bytes]]:
    """Cut complete response bytes into ("line", bytes) and ("literal", bytes) pieces."""
    if data.find(b"\n") == len(data) - 1 and literal_announced(data) is None:
        return [("line", data)]  # the common case: one line
    reader = LineReader(len(data) + 2, auto_literals=True)
    reader.feed(data)
    out: list[tuple[str, bytes]] = []
    while (piece := reader.next_piece()) is not None:
        out.append(("literal" if isinstance(piece, Literal) else "line", piece.raw))
    rest = reader.clear()  # (a piece may end at a literal's announcement)
    if rest:
        out.append(("line", rest))
    return out


def failure(exc: Exception) -> str:
    """What went wrong, on one line: the exception's type and message (for the transcript)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())
