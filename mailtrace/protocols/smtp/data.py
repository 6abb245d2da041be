"""Reading the DATA body: find the end, check the lines, keep what fits (server and observer).

Theory of operation
-------------------
    "The mail data are terminated by a line containing only a period, that is, the character
    sequence "<CRLF>.<CRLF>" ... Before sending a line of mail text, the SMTP client checks the
    first character of the line.  If it is a period, one additional period is inserted at the
    beginning of the line." ... the receiver: "If the first character is a period and there
    are other characters on the line, the first character is deleted."   (RFC 5321 §4.5.2)

A body is megabytes, so it is not split into lines one by one: ``DataReader.consume`` scans
the buffered bytes in bulk, with a few C-speed passes per chunk and no Python loop per line:

* a regular expression finds the final "." line;
* ``bytes.translate`` keeps only the octets the rules are about (CR, LF, NUL and the other
  controls: about two per line), and the bare LF / bare CR / NUL / control checks count in
  that short string, against one ``bytes.count(b"\\r\\n")`` of the chunk;
* long lines: from each line start, ``bytes.rfind`` jumps to the last LF within 1000 octets;
  there is none only when the line is too long (about one jump per 1000 octets).

It keeps the body until ``max_size``; past it the body is discarded as it arrives (RFC 1870
§6.3) and only the first ``keep`` octets stay for the transcript.  Like the line reader it
accepts a bare LF as a line end (``.\\n`` ends the data too) but reports it.
``tests/unit/test_smtp_data_reader.py`` holds it to a line-by-line reference on random input.
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
# a line that starts with "." (the regular expression engine finds it about twice as fast as
# bytes.find or bytes.replace in CPython 3.11, measured on text bodies)
_DOT_AT_LINE_START = re.compile(rb"\n\.")
# RFC 5322 §3.5: "the use of US-ASCII control characters (values 1 through 8, 11, 12, and 14
# through 31) is discouraged"; 127 (DEL) is named with them in §4 (obsolete syntax)
_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OCTETS = bytes([*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_OTHER_OCTETS = bytes(set(range(256)) - set(_CONTROL_OCTETS))
# what DataReader.add looks at: line ends, NUL and the controls (deleting every other octet)
_UNREMARKABLE_OCTETS = bytes(set(_OTHER_OCTETS) - set(b"\r\n\x00"))


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
        self._kept: bytes | None = None  # ``body`` as bytes, once asked for (see _body_bytes)
        self._at_bol = True
        self._line_len = 0  # octets of the line still open at the end of the last chunk
        self._line_dot = False  # that line starts with a (stuffed) dot

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
                self.add(_head(buf, upto))
            return upto, False
        if content_end:
            self.add(_head(buf, content_end))
        self.terminator = bytes(buf[content_end:end])
        if not self.terminator.endswith(b"\r\n"):
            self.rules.add(BARE_LF)
        return end, True

    def add(self, chunk: bytes) -> None:
        """Take bytes known to hold no end of data (the rest of a body cut short)."""
        self._check(chunk)
        self._kept = None
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

    def _check(self, chunk: bytes) -> None:
        """Note the rules ``chunk`` breaks (its lines may have begun in an earlier chunk)."""
        rules = self.rules
        # the CR, LF, NUL and control octets, in order: a short string for a text body
        marks = chunk.translate(None, _UNREMARKABLE_OCTETS)
        if marks:
            if BARE_LF not in rules or BARE_CR not in rules:  # §2.3.8: CR and LF only as a pair
                pairs = chunk.count(b"\r\n")
                if marks.count(b"\n") != pairs:
                    rules.add(BARE_LF)
                if marks.count(b"\r") != pairs:
                    rules.add(BARE_CR)
            if b"\x00" in marks:
                rules.add(NUL_IN_DATA)
            if marks.translate(None, b"\r\n\x00"):
                rules.add(CONTROL_IN_DATA)
        if not self.eight_bit and not chunk.isascii():
            self.eight_bit = True
        if LINE_TOO_LONG not in rules and self._has_long_line(chunk):
            rules.add(LINE_TOO_LONG)
        last = chunk.rfind(b"\n")
        if last >= 0:
            self._line_len = len(chunk) - last - 1
            self._line_dot = chunk[last + 1:last + 2] == b"."
        else:
            if not self._line_len:
                self._line_dot = chunk[:1] == b"."
            self._line_len += len(chunk)
        self._at_bol = last == len(chunk) - 1

    def _has_long_line(self, chunk: bytes) -> bool:
        """§4.5.3.1.6: "The maximum total length of a text line including the <CRLF> is 1000
        octets (not counting the leading dot duplicated for transparency)": fewer than 1000
        octets before its LF, one more when the line starts with a dot (§4.5.2 stuffing).  From
        each line start, jump to the last LF within that limit: when there is none, the line is
        too long (a line still open at the end is judged so far)."""
        start = -self._line_len  # where the current line began, in chunk positions
        size = len(chunk)
        while True:
            dot = self._line_dot if start < 0 else chunk[start:start + 1] == b"."
            limit = MAX_TEXT_LINE + dot
            if start + limit > size:
                return False
            lf = chunk.rfind(b"\n", max(start, 0), start + limit)
            if lf < 0:
                return True
            start = lf + 1

    def spill(self, sink: Callable[[bytes], None]) -> None:
        """From now on the body goes to ``sink`` as it arrives (a file), and only its first
        ``keep`` octets stay here, for the transcript."""
        self.sink = sink
        self._kept = None
        del self.body[self.keep:]

    @property
    def truncated(self) -> bool:
        """The transcript keeps only the start of the body (too big, or spilled to a file)."""
        return self.size > len(self.body)

    def _body_bytes(self) -> bytes:
        """``body`` as bytes, copied once for ``raw`` and ``message`` (a body is megabytes)."""
        kept = self._kept
        if kept is None:
            kept = self._kept = bytes(self.body)
        return kept

    @property
    def raw(self) -> bytes:
        """The body as sent, final dot line included (cut short when oversize)."""
        return b"".join((self._body_bytes(), self.terminator))

    @property
    def wire_size(self) -> int:
        return self.size + len(self.terminator)

    def notes(self, body_8bitmime: bool, smtputf8: bool) -> list[Note]:
        """The violations of the whole message, given what its MAIL command declared."""
        notes = [Note(rule) for rule in (BARE_LF, BARE_CR, LINE_TOO_LONG, NUL_IN_DATA) if rule in self.rules]
        if CONTROL_IN_DATA in self.rules:
            notes += self._control_notes()
        header_8bit, _ = eight_bit_parts(self._body_bytes()) if self.eight_bit else (False, False)
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
        kept = self._body_bytes()
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
        return unstuff(self._body_bytes())


def _head(buf: bytearray, n: int) -> bytes:
    """``bytes(buf[:n])`` in one copy instead of two (the slice of a bytearray is a copy too)."""
    with memoryview(buf) as view, view[:n] as head:
        return bytes(head)


def unstuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." loses that first dot."""
    if body.startswith(b"."):
        body = body[1:]
    return unstuff_after_line_ends(body)


def unstuff_after_line_ends(text: bytes) -> bytes:
    """``unstuff`` for the lines that start after an LF in ``text`` (not its first line)."""
    if not _DOT_AT_LINE_START.search(text):  # most messages: nothing to remove, no copy made
        return text
    return text.replace(b"\n.", b"\n")
