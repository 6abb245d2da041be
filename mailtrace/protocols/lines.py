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
"""

from __future__ import annotations

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


class LineReader:
    """Splits a byte stream into lines of at most ``limit`` octets (line ending included)."""

    def __init__(self, limit: int) -> None:
        if limit < 2:
            raise ValueError("a line limit must leave room for CRLF")
        self.limit = limit
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already known to hold no LF
        self._overflow = 0  # octets discarded from the current (too long) line

    def feed(self, data: bytes) -> None:
        """Buffer ``data``; only the first pending line is ever cut (see ``_trim``)."""
        self._buf += data
        if self._overflow or len(self._buf) > self.limit:
            self._trim()

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

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` octets as they are (an IMAP literal, a DATA chunk)."""
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._scan = 0
        return data

    def peek(self) -> bytes:
        """Everything buffered and not yet returned (without removing it)."""
        return bytes(self._buf)

    def clear(self) -> bytes:
        """Drop and return everything buffered (e.g. plaintext that followed STARTTLS)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan = 0
        self._overflow = 0
        return data

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
