"""IMAP argument parser: a cursor over the tokens of one command.

Theory of operation.  RFC 3501 §9 gives the grammar of every command.  Each command handler
reads its own arguments through a ``Cursor`` (``astring()``, ``mailbox()``, ``seqset()``,
``flag_list()``, ``end()``...), so the grammar of a command sits next to what it does.  Every
method raises ``ParseError`` naming the token it did not expect; the connection turns that
into a tagged BAD (RFC 3501 §7.1.3: "The BAD response indicates an error message from the
server ... the command is unknown or has syntax errors").
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

from mailtrace.protocols.imap import mutf7
from mailtrace.protocols.imap.lexer import ParseError, T, Token

# RFC 3501 §2.3.2 system flags (\Recent is session-only and cannot be stored).
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_SYSTEM_BY_UPPER = {f.upper(): f for f in SYSTEM_FLAGS}
# RFC 3501 §9: nz-number fits in 32 bits.
MAX_NUMBER = 2**32 - 1
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}
_DATE_RE = re.compile(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$")
_DATETIME_RE = re.compile(r"^ ?(\d?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
_SEQ_RE = re.compile(r"^(\d+|\*)(?::(\d+|\*))?$")


@dataclass(frozen=True)
class SequenceSet:
    """RFC 3501 §9 sequence-set: ranges of numbers where ``None`` stands for "*"."""

    ranges: tuple[tuple[int | None, int | None], ...]
    text: str

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges with "*" replaced by ``largest``, each as (low, high)."""
        out = []
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            out.append((lo, hi))
        return out

    def contains(self, value: int, largest: int) -> bool:
        return any(lo <= value <= hi for lo, hi in self.resolve(largest))


def set_text(numbers) -> str:
    """RFC 3501 §9 sequence-set (RFC 4315 §4 uid-set) of ``numbers``: ascending ranges, "3:5,9"."""
    out: list[list[int]] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(f"{a}:{b}" if a != b else f"{a}" for a, b in out)


def parse_sequence_set(text: str) -> SequenceSet:
    """RFC 3501 §9: seq-number / seq-range, comma separated (``1:*``, ``3,5:7``, ``*``)."""
    ranges = []
    if not text:
        raise ParseError("empty sequence set")
    for item in text.split(","):
        m = _SEQ_RE.match(item)
        if not m:
            raise ParseError(f'bad sequence set "{text}" (item "{item}")')
        a = _seq_number(m.group(1), text)
        b = _seq_number(m.group(2), text) if m.group(2) else a
        ranges.append((a, b))
    return SequenceSet(tuple(ranges), text)


def _seq_number(s: str, text: str) -> int | None:
    if s == "*":
        return None
    v = int(s)
    if v == 0 or v > MAX_NUMBER:
        raise ParseError(f'bad sequence set "{text}": numbers run from 1 to {MAX_NUMBER}')
    return v


def parse_date(text: str) -> tuple[int, int, int]:
    """RFC 3501 §9 date: ``1-Feb-1994`` -> (1994, 2, 1)."""
    m = _DATE_RE.match(text)
    if not m or m.group(2).upper() not in _MONTH_NUM:
        raise ParseError(f'bad date "{text}" (expected e.g. 1-Feb-2024)')
    day, month, year = int(m.group(1)), _MONTH_NUM[m.group(2).upper()], int(m.group(3))
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ParseError(f'bad date "{text}": no such day')
    return year, month, day


def parse_date_time(text: str) -> float:
    """RFC 3501 §9 date-time: ``"17-Jul-1996 02:44:25 -0700"`` -> epoch seconds."""
    m = _DATETIME_RE.match(text)
    if not m or m.group(2).upper() not in _MONTH_NUM:
        raise ParseError(f'bad date-time "{text}" (expected e.g. "17-Jul-1996 02:44:25 -0700")')
    day, year = int(m.group(1)), int(m.group(3))
    hh, mi, ss = int(m.group(4)), int(m.group(5)), int(m.group(6))
    if hh > 23 or mi > 59 or ss > 60 or not 1 <= day <= 31:
        raise ParseError(f'bad date-time "{text}"')
    offset = (int(m.group(8)) * 3600 + int(m.group(9)) * 60) * (1 if m.group(7) == "+" else -1)
    try:
        stamp = calendar.timegm((year, _MONTH_NUM[m.group(2).upper()], day, hh, mi, ss, 0, 0, 0))
    except (ValueError, OverflowError):
        raise ParseError(f'bad date-time "{text}"') from None
    return float(stamp - offset)


class Cursor:
    """Reads the arguments of one command, token by token."""

    def __init__(self, tokens: list[Token], pos: int = 0, utf8: bool = False) -> None:
        self.tokens = tokens
        self.pos = pos
        self.utf8 = utf8  # ENABLE UTF8=ACCEPT: mailbox names come in UTF-8 (RFC 6855 §3)

    # -- low level ---------------------------------------------------------------------
    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def next(self, what: str) -> Token:
        tok = self.peek()
        if tok is None:
            raise ParseError(f"missing {what}")
        self.pos += 1
        return tok

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise ParseError(f"unexpected {tok.describe()} after the last argument")

    def peek_atom(self) -> str | None:
        """The upper-cased next atom, or None if the next token is not an atom."""
        tok = self.peek()
        return tok.text().upper() if tok is not None and tok.kind is T.ATOM else None

    def open_paren(self, what: str) -> None:
        tok = self.next(what)
        if tok.kind is not T.LPAREN:
            raise ParseError(f'expected "(" to open {what}, got {tok.describe()}')

    def close_paren_if_next(self) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind is T.RPAREN:
            self.pos += 1
            return True
        return False

    def paren_if_next(self) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind is T.LPAREN:
            self.pos += 1
            return True
        return False

    # -- RFC 3501 §9 productions -----------------------------------------------------
    def atom(self, what: str) -> str:
        tok = self.next(what)
        if tok.kind is not T.ATOM:
            raise ParseError(f"expected {what} (an atom), got {tok.describe()}")
        return tok.text()

    def astring(self, what: str) -> bytes:
        """RFC 3501 §9 astring: atom, quoted string or literal."""
        tok = self.next(what)
        if tok.kind not in (T.ATOM, T.QUOTED, T.LITERAL):
            raise ParseError(f"expected {what}, got {tok.describe()}")
        return tok.value

    def string(self, what: str) -> bytes:
        tok = self.next(what)
        if tok.kind not in (T.QUOTED, T.LITERAL):
            raise ParseError(f"expected {what} as a quoted string or literal, got {tok.describe()}")
        return tok.value

    def text_astring(self, what: str) -> str:
        value = self.astring(what)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{what} is not valid UTF-8") from None

    def mailbox(self, what: str = "mailbox name") -> str:
        """RFC 3501 §5.1: "INBOX" is case-insensitive; other names are kept as given."""
        name = self.list_mailbox(what)
        return "INBOX" if name.upper() == "INBOX" else name

    def list_mailbox(self, what: str) -> str:
        """RFC 3501 §9 list-mailbox: like astring but may hold the wildcards % and *.  After
        ENABLE UTF8=ACCEPT the name is UTF-8, converted to the stored modified UTF-7 (RFC 6855
        §3: servers "MUST accept UTF8-quoted mailbox names and convert them")."""
        name = self.text_astring(what)
        return mutf7.encode(name) if self.utf8 else name

    def number(self, what: str) -> int:
        text = self.atom(what)
        if not text.isdigit() or int(text) > MAX_NUMBER:
            raise ParseError(f'expected {what} (a number), got "{text}"')
        return int(text)

    def seqset(self, what: str = "sequence set") -> SequenceSet:
        tok = self.next(what)
        if tok.kind is not T.ATOM:
            raise ParseError(f"expected {what}, got {tok.describe()}")
        return parse_sequence_set(tok.text())

    def flag_list(self, what: str = "flag list", allow_bare: bool = False) -> list[str]:
        """RFC 3501 §9 flag-list: "(" [flag *(SP flag)] ")"; STORE also allows bare flags."""
        if not self.paren_if_next():
            if not allow_bare:
                tok = self.peek()
                raise ParseError(f'expected "(" to open {what}, got {tok.describe() if tok else "nothing"}')
            flags = []
            while self.peek_atom() is not None:
                flags.append(normalize_flag(self.atom("flag")))
            if not flags:
                raise ParseError(f"missing {what}")
            return flags
        flags = []
        while not self.close_paren_if_next():
            flags.append(normalize_flag(self.atom("flag")))
        return flags


def normalize_flag(text: str) -> str:
    """System flags in their canonical case; keywords as given (RFC 3501 §2.3.2)."""
    if text.startswith("\\"):
        flag = _SYSTEM_BY_UPPER.get(text.upper())
        if flag is None:
            raise ParseError(f'unknown system flag "{text}" (keywords do not start with \\)')
        return flag
    if not text or any(c in '(){%*"\\]' or ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise ParseError(f'bad flag keyword "{text}"')
    return text
