"""Reading the DATA body: find the end, check the lines, keep what fits (server and observer).

Theory of operation
-------------------
    "The mail data are terminated by a line containing only a period, that is, the character
    sequence "<CRLF>.<CRLF>" ... Before sending a line of mail text, the SMTP client checks the
    first character of the line.  If it is a period, one additional period is inserted at the
    beginning of the line." ... the receiver: "If the first character is a period and there
    are other characters on the line, the first character is deleted."   (RFC 5321 §4.5.2)

A body is megabytes, so it is not split into lines one by one: ``DataReader.consume`` scans
the buffered bytes in bulk (a regular expression finds the final "." line; ``bytes.count``
finds bare LF / bare CR; a split measures line lengths only when a chunk could hold a long
line), and keeps the body until ``max_size``; past it the body is discarded as it arrives
(RFC 1870 §6.3) and only the first ``keep`` octets stay for the transcript.  Like the line
reader it accepts a bare LF as a line end (``.\\n`` ends the data too) but reports it.
"""

from __future__ import annotations

import re
from typing import Callable

from mailtrace.protocols.smtp.spec import (
    BARE_CR, BARE_LF, CONTROL_IN_DATA, CONTROL_IN_HEADER, EIGHT_BIT, EIGHT_BIT_HEADER, LINE_TOO_LONG, MAX_TEXT_LINE, NUL_IN_DATA,
    PROTOCOL, State,
)
from mailtrace.protocols.utf8mail import HEADER_END, eight_bit_parts
from mailtrace.transcript.event import Event, Kind, Note, Side

_END_OF_DATA = re.compile(rb"\n\.\r?\n")  # a line holding only "." ends the data (§4.1.1.4)
# RFC 5322 §3.5: "the use of US-ASCII control characters (values 1 through 8, 11, 12, and 14
# through 31) is discouraged"; 127 (DEL) is named with them in §4 (obsolete syntax)
_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OCTETS = bytes([*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_OTHER_OCTETS = bytes(set(range(256)) - set(_CONTROL_OCTETS))


def has_control(chunk: bytes) -> bool:
    """Whether ``chunk`` holds one of the ``_CONTROL`` octets.  (Deleting every other octet and
    looking at what is left does the same as ``_CONTROL.search`` several times faster, which
    counts on a body of megabytes.)"""
    return bool(chunk.translate(None, _OTHER_OCTETS))


class DataReader:
    """Accumulates one message body from a byte buffer until the line holding only "."."""

    def __init__(self, max_size: int, keep: int) -> None:
        self.max_size = max_size  # beyond this the body is discarded (oversize)
        self.keep = keep  # octets of an oversize body kept for the transcript
        self.body = bytearray()  # as sent (dot-stuffed), without the final ".CRLF"
        self.size = 0  # octets of body seen so far
        self.oversize = False
        self.eight_bit = False
        self.rules: set[str] = set()  # violation rules found (bare-lf, bare-cr, line-too-long)
        self.terminator = b""  # ".\r\n" (or ".\n") once the end was seen
        self.sink: Callable[[bytes], None] | None = None  # where the body goes once spilled (see spill)
        self._at_bol = True
        self._line_len = 0

    def consume(self, buf: bytearray) -> tuple[int, bool]:
        """Scan ``buf``; return (octets consumed, finished).  The caller deletes what was consumed."""
        if not buf:
            return 0, False
        end = -1
        if self._at_bol and (buf[:3] == b".\r\n" or buf[:2] == b".\n"):
            content_end, end = 0, (3 if buf[:2] == b".\r" else 2)
        else:
            m = _END_OF_DATA.search(buf)
            if m:
                content_end, end = m.start() + 1, m.end()
        if end < 0:
            upto = buf.rfind(b"\n") + 1
            if len(buf) - upto > 2:  # a long partial line cannot be the final "." line: take it now
                upto = len(buf) - (1 if buf[-1] == 0x0D else 0)  # keep a CR whose LF may follow
            if upto > 0:
                self.add(bytes(buf[:upto]))
            return upto, False
        if content_end:
            self.add(bytes(buf[:content_end]))
        self.terminator = bytes(buf[content_end:end])
        if not self.terminator.endswith(b"\r\n"):
            self.rules.add(BARE_LF)
        return end, True

    def add(self, chunk: bytes) -> None:
        """Take bytes known to hold no end of data (the rest of a body cut short)."""
        crlf = chunk.count(b"\r\n")
        if chunk.count(b"\n") != crlf:
            self.rules.add(BARE_LF)
        if chunk.count(b"\r") != crlf:
            self.rules.add(BARE_CR)
        if not self.eight_bit and not chunk.isascii():
            self.eight_bit = True
        if NUL_IN_DATA not in self.rules and b"\x00" in chunk:
            self.rules.add(NUL_IN_DATA)
        if CONTROL_IN_DATA not in self.rules and has_control(chunk):
            self.rules.add(CONTROL_IN_DATA)
        if LINE_TOO_LONG not in self.rules and self._line_len + len(chunk) >= MAX_TEXT_LINE:
            # §4.5.3.1.6: 1000 octets with the CRLF, i.e. >= 1000 octets before the LF
            pieces = chunk.split(b"\n")
            if max(self._line_len + len(pieces[0]), max(map(len, pieces))) >= MAX_TEXT_LINE:
                self.rules.add(LINE_TOO_LONG)
        last = chunk.rfind(b"\n")
        self._line_len = len(chunk) - last - 1 if last >= 0 else self._line_len + len(chunk)
        self._at_bol = last == len(chunk) - 1
        self.size += len(chunk)
        if self.size > self.max_size and not self.oversize:  # RFC 1870 §6.3: discard at once, 552 after the dot
            self.oversize = True
            self.sink = None
            del self.body[self.keep:]
        if self.sink is not None:
            self.sink(chunk)
        if self.oversize or self.sink is not None:
            room = self.keep - len(self.body)
            if room > 0:
                self.body += chunk[:room]
        else:
            self.body += chunk

    def spill(self, sink: Callable[[bytes], None]) -> None:
        """From now on the body goes to ``sink`` as it arrives (a file), and only its first
        ``keep`` octets stay here, for the transcript."""
        self.sink = sink
        del self.body[self.keep:]

    @property
    def truncated(self) -> bool:
        """The transcript keeps only the start of the body (too big, or spilled to a file)."""
        return self.size > len(self.body)

    @property
    def raw(self) -> bytes:
        """The body as sent, final dot line included (cut short when oversize)."""
        return bytes(self.body) + self.terminator

    @property
    def wire_size(self) -> int:
        return self.size + len(self.terminator)

    def notes(self, body_8bitmime: bool, smtputf8: bool) -> list[Note]:
        """The violations of the whole message, given what its MAIL command declared."""
        notes = [Note(rule) for rule in (BARE_LF, BARE_CR, LINE_TOO_LONG, NUL_IN_DATA) if rule in self.rules]
        if CONTROL_IN_DATA in self.rules:
            notes += self._control_notes()
        header_8bit, _ = eight_bit_parts(bytes(self.body)) if self.eight_bit else (False, False)
        if self.eight_bit and not body_8bitmime and not smtputf8:
            # SMTPUTF8 allows UTF-8 in the header and the body too (RFC 6532 §3.2: "text =/ UTF8-non-ascii")
            notes.append(Note(EIGHT_BIT))
        if header_8bit and not smtputf8:  # 8BITMIME covers the body only (RFC 6532 §3, RFC 6531 §3.2)
            notes.append(Note(EIGHT_BIT_HEADER))
        return notes

    def _control_notes(self) -> list[Note]:
        """Where the control characters are: in the header section a violation (RFC 5322 §2.2,
        obsolete syntax by §4: "MUST NOT be generated"), in the body a note (§3.5).  Judged on
        the octets kept (all of them, unless the message was spooled or too big)."""
        kept = bytes(self.body)
        end = HEADER_END.search(kept)
        no_header = kept.startswith((b"\r\n", b"\n"))
        header = b"" if no_header else kept[:end.start()] if end else kept
        body = kept[len(header):]
        notes = []
        if _CONTROL.search(header):
            notes.append(Note(CONTROL_IN_HEADER))
        if _CONTROL.search(body) or (not notes and self.truncated):
            notes.append(Note(CONTROL_IN_DATA))
        return notes

    def event(self, notes: list[Note] | tuple[Note, ...] = (), incomplete: str = "") -> Event:
        """The message as ONE transcript event (cut short when oversize; ``incomplete``: why it
        ended before the final dot)."""
        return Event(side=Side.CLIENT, kind=Kind.DATA, raw=self.raw, verb="DATA", state=State.DATA.value,
                     notes=tuple(notes), size=self.wire_size if self.truncated else -1, protocol=PROTOCOL,
                     incomplete=incomplete)

    def message(self) -> bytes:
        """The message with the dot-stuffing removed (§4.5.2)."""
        return unstuff(bytes(self.body))


def unstuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." loses that first dot."""
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\n.", b"\n")

