"""IMAP command lexer: one complete command (its literals included) -> tokens.

Theory of operation.  RFC 3501 §4 defines the data formats a client uses in its commands:
atoms, numbers, strings and parenthesized lists.  "A string is in one of two forms: either
literal or quoted string" (§4.3).  A quoted string is "a sequence of zero or more 7-bit
characters, excluding CR and LF, with double quote (<">) characters at each end"; a literal is
"a sequence of zero or more octets (including CR and LF), prefix-quoted with an octet count in
the form of an open brace ("{"), the number of octets, close brace ("}"), and CRLF".  RFC 7888
adds the non-synchronizing form ``{n+}``.

The framing in ``server.py`` has already collected every byte of the command, reading each
literal by its byte count, so this lexer never waits for input: it walks the bytes once and
returns ``Token`` objects.  A bracketed section such as ``BODY[HEADER.FIELDS (FROM)]<0.10>`` is
kept in one ATOM token (RFC 3501 §9 ``section`` may contain spaces and parentheses).
An atom holding atom-specials (RFC 3501 §9 ``atom-specials``) is still accepted, but noted as
the violation ``unquoted-specials``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from mailtrace.transcript.event import Note


class ParseError(Exception):
    """Malformed command: the message says which token is wrong (sent as tagged BAD)."""


class T(enum.Enum):
    ATOM = "atom"
    QUOTED = "quoted string"
    LITERAL = "literal"
    LPAREN = "("
    RPAREN = ")"


@dataclass(frozen=True, slots=True)
class Token:
    kind: T
    value: bytes
    pos: int

    def text(self) -> str:
        return self.value.decode("utf-8", errors="replace")

    def describe(self) -> str:
        if self.kind in (T.LPAREN, T.RPAREN):
            return f'"{self.kind.value}"'
        shown = self.text()
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return f'{self.kind.value} "{shown}"'


# RFC 3501 §9: quoted-specials = DQUOTE / "\"; these may not appear in an atom.
QUOTED_SPECIALS = b'"\\'
# Bytes that end an atom (SP, parentheses, line end).
_ATOM_END = frozenset(b" ()\r\n")
# RFC 3501 §9 atom-specials that we accept inside an atom but flag (a student's mistake).
_FLAGGED_SPECIALS = frozenset(b'"\\{')
_LITERAL_RE = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n")


def tokenize(data: bytes, start: int = 0) -> tuple[list[Token], list[Note]]:
    """Tokens of ``data[start:]`` (a whole command, final CRLF optional) and the notes found."""
    tokens: list[Token] = []
    notes: list[Note] = []
    i, n = start, len(data)
    while i < n:
        c = data[i]
        if c == 0x20:  # SP
            i += 1
        elif c in (0x0D, 0x0A):  # the final CRLF (or bare LF)
            rest = data[i:].lstrip(b"\r\n")
            if rest:
                raise ParseError(f"line break inside the command at octet {i}")
            break
        elif c == 0x28:
            tokens.append(Token(T.LPAREN, b"(", i))
            i += 1
        elif c == 0x29:
            tokens.append(Token(T.RPAREN, b")", i))
            i += 1
        elif c == 0x22:  # quoted string, RFC 3501 §4.3
            value, i = _quoted(data, i)
            tokens.append(Token(T.QUOTED, value, i))
        elif (c == 0x7B and _LITERAL_RE.match(data, i)) or (c == 0x7E and _LITERAL_RE.match(data, i + 1)):
            # literal, RFC 3501 §4.3 / RFC 7888; "~{n}" is RFC 3516's literal8 (any octet, NUL too)
            m = _LITERAL_RE.match(data, i + (c == 0x7E))
            assert m is not None
            size = int(m.group(1))
            body_start = m.end()
            if body_start + size > n:
                raise ParseError(f"literal {{{size}}} at octet {i} is cut short")
            tokens.append(Token(T.LITERAL, data[body_start:body_start + size], i))
            i = body_start + size
        else:
            start_atom = i
            value, i = _atom(data, i)
            body = value[1:] if value.startswith(b"\\") else value  # a flag: "\\" atom (RFC 3501 §9)
            bad = sorted({chr(b) for b in body if b in _FLAGGED_SPECIALS or b < 0x20 or b == 0x7F})
            if bad:
                notes.append(Note("unquoted-specials", f"{value[:40].decode('utf-8', 'replace')!r} holds {''.join(bad)!r}"))
            tokens.append(Token(T.ATOM, value, start_atom))
    return tokens, notes


def _quoted(data: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    j = i + 1
    n = len(data)
    while j < n:
        c = data[j]
        if c == 0x22:
            return bytes(out), j + 1
        if c == 0x5C:  # backslash: only \" and \\ are allowed (RFC 3501 §9 QUOTED-CHAR)
            if j + 1 < n and data[j + 1] in QUOTED_SPECIALS:
                out.append(data[j + 1])
                j += 2
                continue
            raise ParseError(f"bad escape in quoted string at octet {j}: only \\\" and \\\\ are allowed")
        if c in (0x0D, 0x0A):
            break
        out.append(c)
        j += 1
    raise ParseError(f"unterminated quoted string starting at octet {i}")


def _atom(data: bytes, i: int) -> tuple[bytes, int]:
    j = i
    n = len(data)
    while j < n:
        c = data[j]
        if c == 0x5B:  # "[": a section spec, read up to the matching "]"
            end = _section_end(data, j)
            if end is not None:
                j = end
                continue
            # no "]" on this line: "[" is an ordinary ATOM-CHAR (RFC 3501 §9 atom-specials
            # do not include it), as in the mailbox name "a[b"
        if c in _ATOM_END:
            break
        j += 1
    return data[i:j], j


def _section_end(data: bytes, j: int) -> int | None:
    """Where the bracketed section starting at ``data[j] == "["`` ends (after its "]"), or
    None when the line holds no matching "]"."""
    depth = 0
    n = len(data)
    while j < n:
        if data[j] == 0x5B:
            depth += 1
        elif data[j] == 0x5D:
            depth -= 1
            if depth == 0:
                return j + 1
        elif data[j] in (0x0D, 0x0A):
            return None
        j += 1
    return None
