"""CRLF line framing with limits: the lowest layer of every text mail protocol.

Theory of operation
-------------------
SMTP, POP3 and IMAP are all line-oriented.  RFC 5321 §2.3.8 says:

    "Lines consist of zero or more data characters terminated by the sequence ASCII
    character "CR" (hex value 0D) followed immediately by ASCII character "LF" (hex value
    0A).  ...  the sequence "CR" "LF" must only occur at the end of a line, and a bare
    "LF" or "CR" must not be sent ..."

Real clients (and students typing into ``nc``, which sends a bare LF) break this rule, so
the reader is liberal in what it accepts, as sendmail was: a line ends at the first LF, with
or without the CR before it.  Each ``Line`` then says what was wrong with it (``bare_lf``,
``bare_cr``, ``too_long``) so the protocol core can record a violation.

Lines longer than the limit are not buffered without bound: once ``limit`` octets have been
seen without a line end the rest of the line is discarded as it arrives (only the first
``limit`` octets are kept, for the transcript) and the line is reported ``too_long`` when its
end finally comes; ``size`` still counts every octet.  The limits themselves belong to the
protocol (RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF; POP3 and
IMAP have their own), so they are passed in, never assumed here.

The reader is sans-I/O: ``feed(bytes)`` then ``next_line()`` until it returns ``None``.

IMAP literals
-------------
IMAP adds one rule (RFC 3501 §4.3): "A literal is a sequence of zero or more octets
(including CR and LF), prefix-quoted with an octet count in the form of an open brace ("{"),
the number of octets, close brace ("}"), and CRLF."  The octets that follow are *not* lines:
a literal may hold any byte, LF included, and the command goes on after its last octet.
RFC 7888 §3 adds the non-synchronizing form ``{n+}`` (sent without waiting for the server's
"+"); LITERAL- (RFC 7888 §5) uses the same form, only smaller ("MUST NOT be larger than 4096
bytes").  ``literal_announced(line)`` finds the announcement; ``expect_literal(n)`` makes the
next ``n`` octets one ``Literal`` piece of ``next_piece()`` (or several, as they arrive, for a
core that writes a large APPEND to disk); with ``auto_literals`` (observers) every line that
announces a literal is followed by one.  ``literal_keep`` caps what is kept of a literal: the
rest is counted in ``size`` and discarded, as for a too-long line.
"""

from __future__ import annotations

import re

CR = 0x0D
LF = 0x0A


class Line:
    """One line as received.

    ``raw``      the octets as sent, line ending included (cut to ``limit`` when too long);
    ``size``     how many octets the line really had on the wire (ending included);
    ``too_long`` the line was longer than the limit (its excess was discarded);
    ``bare_lf``  it ended in LF without CR;   ``bare_cr``: a CR not followed by LF inside it.
    """

    __slots__ = ("raw", "size", "too_long", "bare_lf", "bare_cr")

    def __init__(self, raw: bytes, size: int, too_long: bool = False, bare_lf: bool = False,
                 bare_cr: bool = False) -> None:
        self.raw = raw
        self.size = size
        self.too_long = too_long
        self.bare_lf = bare_lf
        self.bare_cr = bare_cr

    @property
    def content(self) -> bytes:
        """The line without its line ending."""
        raw = self.raw
        if raw.endswith(b"\r\n"):
            return raw[:-2]
        if raw.endswith(b"\n"):
            return raw[:-1]
        return raw

    def __repr__(self) -> str:
        flags = [name for name in ("too_long", "bare_lf", "bare_cr") if getattr(self, name)]
        return f"Line({self.raw!r}, size={self.size}{', ' + ', '.join(flags) if flags else ''})"


# RFC 3501 §9: literal = "{" number "}" CRLF *CHAR8; RFC 7888 §8: literal = "{" number ["+"] "}" CRLF
_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")


def literal_announced(line: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronizing) if ``line`` ends with an IMAP literal's ``{n}`` / ``{n+}``."""
    m = _LITERAL_AT_END.search(line, max(0, len(line) - 26))
    if not m:
        return None
    return int(m.group(1)), m.group(2) == b"+"


class Literal:
    """The octets of an IMAP literal (or, read in chunks, the part that has arrived).

    ``raw``   the octets kept (all of them unless ``literal_keep`` cut it);
    ``size``  how many octets this piece really had;   ``left``: octets still to come (0: the end).
    """

    __slots__ = ("raw", "size", "left")

    def __init__(self, raw: bytes, size: int, left: int = 0) -> None:
        self.raw = raw
        self.size = size
        self.left = left

    def __repr__(self) -> str:
        return f"Literal({self.raw[:20]!r}, size={self.size}, left={self.left})"


class LineReader:
    """Splits a byte stream into lines of at most ``limit`` octets (line ending included),
    and, for IMAP, literals (see the module docstring)."""

    def __init__(self, limit: int, *, auto_literals: bool = False, literal_keep: int | None = None) -> None:
        if limit < 2:
            raise ValueError("a line limit must leave room for CRLF")
        self.limit = limit
        self.auto_literals = auto_literals
        self.literal_keep = literal_keep
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already known to hold no LF
        self._overflow = 0  # octets discarded from the current (too long) line
        self._literal_left = -1  # octets of the literal still to come (-1: reading lines)
        self._literal_size = 0
        self._literal = bytearray()  # the kept octets of the literal so far
        self._chunks = False

    def feed(self, data: bytes) -> None:
        """Buffer ``data``; only the first pending line is ever cut (see ``_trim``)."""
        self._buf += data
        if self._literal_left < 0 and (self._overflow or len(self._buf) > self.limit):
            self._trim()

    # -- literals ---------------------------------------------------------------------------
    def expect_literal(self, size: int, *, chunks: bool = False) -> None:
        """The next ``size`` octets are a literal: ``next_piece()`` returns it whole (or, with
        ``chunks``, each part as it arrives)."""
        self._literal_left = size
        self._literal_size = size
        self._literal = bytearray()
        self._chunks = chunks
        self._scan = 0

    def cancel_literal(self) -> None:
        """The announced literal will not come (the server refused it, RFC 3501 §7.5)."""
        self._literal_left = -1
        self._literal = bytearray()

    @property
    def in_literal(self) -> bool:
        return self._literal_left >= 0

    @property
    def literal_left(self) -> int:
        return max(self._literal_left, 0)

    def next_piece(self) -> Line | Literal | None:
        """The next complete line or literal (a literal part, when read in chunks), or None."""
        if self._literal_left < 0:
            line = self.next_line()
            if line is not None and self.auto_literals:
                announced = literal_announced(line.raw)
                if announced is not None:
                    self.expect_literal(announced[0])
            return line
        buf = self._buf
        take = min(len(buf), self._literal_left)
        if take:
            chunk = bytes(buf[:take])
            del buf[:take]
            self._literal_left -= take
            if self._chunks:
                if self._literal_left == 0:
                    self._literal_left = -1
                return Literal(chunk, take, self.literal_left if self.in_literal else 0)
            keep = self.literal_keep
            if keep is None:
                self._literal += chunk
            elif len(self._literal) < keep:
                self._literal += chunk[:keep - len(self._literal)]
        if self._literal_left:
            return None
        self._literal_left = -1
        raw, self._literal = bytes(self._literal), bytearray()
        if self._chunks:  # an empty literal read in chunks
            return Literal(b"", 0)
        return Literal(raw, self._literal_size)

    def _trim(self) -> None:
        """Discard the excess of a too-long line that has not ended yet."""
        nl = self._buf.find(b"\n", self._scan)
        end = nl if nl >= 0 else len(self._buf)
        if end > self.limit:
            # Keep the first `limit` octets; drop the rest up to the LF (or the end).
            # A CR right before the LF (or last, its LF still to come) is kept for the ending.
            cut_to = end - 1 if self._buf[end - 1] == CR else end
            if cut_to > self.limit:
                self._overflow += cut_to - self.limit
                del self._buf[self.limit:cut_to]
        if nl < 0:
            self._scan = len(self._buf)

    def next_line(self) -> Line | None:
        """The next complete line, or None when more input is needed."""
        buf = self._buf
        nl = buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(buf)
            return None
        raw = bytes(buf[: nl + 1])
        del buf[: nl + 1]
        self._scan = 0
        overflow, self._overflow = self._overflow, 0
        bare_lf = nl == 0 or raw[nl - 1] != CR
        crs = raw.count(b"\r")
        bare_cr = crs > (0 if bare_lf else 1)
        size = len(raw) + overflow
        too_long = size > self.limit
        if len(raw) > self.limit:  # a long line that arrived whole: keep only its start
            raw = raw[: self.limit] + (b"\n" if bare_lf else b"\r\n")
        return Line(raw, size, too_long, bare_lf, bare_cr)

    def peek(self) -> bytes:
        """Everything buffered and not yet returned (without removing it)."""
        return bytes(self._buf)

    def clear(self) -> bytes:
        """Drop and return everything buffered (e.g. plaintext that followed STARTTLS),
        the kept part of an unfinished literal first."""
        data = bytes(self._literal) + bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        self._overflow = 0
        self.cancel_literal()
        return data

    @property
    def overflowing(self) -> bool:
        """The line being read is already longer than the limit (its end has not come yet)."""
        return self._overflow > 0 or (self._literal_left < 0 and len(self._buf) > self.limit
                                      and self._buf.find(b"\n", 0, self.limit) < 0)

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as lines."""
        return len(self._buf) + self._overflow

    @property
    def buffer(self) -> bytearray:
        """The internal buffer, for cores that scan bulk data (SMTP DATA) in place.

        A core that consumes from it directly must call :meth:`consumed` afterwards."""
        return self._buf

    def consumed(self, n: int) -> None:
        del self._buf[:n]
        self._scan = 0
