"""Trace headers added at delivery: Return-Path and Received (RFC 5321 §4.4).

Theory of operation
-------------------
    "When an SMTP server receives a message for delivery or further processing, it MUST
    insert trace ("time stamp" or "Received") information at the beginning of the message
    content ... When the delivery SMTP server makes the "final delivery" of a message, it
    inserts a return-path line at the beginning of the mail data."      (RFC 5321 §4.4)

The Received line follows the grammar of §4.4 (``From-domain By-domain [Via] [With] [ID]
[For] ";" date-time``); the ``with`` keyword is ESMTP, ESMTPS, ESMTPA, ESMTPSA or SMTP
(RFC 3848), or UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA when the MAIL command carried
SMTPUTF8 (RFC 6531 §3.7.3, §4.3); the addresses are then UTF-8 (``for <josé@lab.test>``).  Pure string work: the time is passed in.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import functools
import re


def _client_literal(client: str) -> str:
    """"127.0.0.1:51234" -> "[127.0.0.1]" (an address literal, §4.1.3)."""
    host = client.rsplit(":", 1)[0] if client.count(":") == 1 else client.rpartition(":")[0] or client
    host = host.strip("[]")
    if ":" in host:
        return f"[IPv6:{host}]"
    return f"[{host}]" if host else "[unknown]"


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """The date-time of a Received line (RFC 5322 §3.3), to the second; the messages of one
    second share it (hundreds a second in a busy lab)."""
    return email.utils.format_datetime(_dt.datetime.fromtimestamp(second, _dt.timezone.utc))


def trace_headers(*, sender: str, recipient: str, helo: str, client: str, hostname: str, software: str,
                  with_: str, queue_id: str, when: float) -> bytes:
    date = _date(int(when))
    helo = "".join(ch for ch in helo if 32 < ord(ch) < 127 and ch not in "()") or "unknown"
    received = (f"Received: from {helo} ({_client_literal(client)})\r\n"
                f"\tby {hostname} ({software}) with {with_} id {queue_id}\r\n"
                f"\tfor <{recipient}>; {date}\r\n")
    return f"Return-Path: <{sender}>\r\n{received}".encode("utf-8")


# RFC 5322 §2.2: "A field name MUST be composed of printable US-ASCII characters (i.e.,
# characters that have values between 33 and 126, inclusive), except colon."
# §2.1.1: a line is at most 998 characters, so a longer run of name characters is no field name
MAX_FIELD_NAME = 998
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]{1,%d}:" % MAX_FIELD_NAME)
_FIELD_NAME_SO_FAR = re.compile(rb"[\x21-\x39\x3b-\x7e]*")


class HeaderBreak:
    """Puts an empty line where the header section ends, if it has none there, in a message
    that arrives in pieces (``feed`` each piece in order, then ``end``).

    RFC 5322 §2.1: "A message consists of header fields ... optionally followed by a message
    body"; the body is "preceded by" an empty line.  A message typed by hand (``Hola...``) has
    no header section, and once trace headers go in front of it its first line would read as
    a broken header field (IMAP's ENVELOPE would lose it).  As Postfix's cleanup(8) does, the
    header section ends at the first line that is neither a header field nor its
    continuation (a line starting with a space or tab, RFC 5322 §2.2.3), and an empty line is
    put there.  Only the start of the current line is held back (at most a field name), so a
    large message that is written to disk as it arrives gets the same result as one held in
    memory (``with_header_break``)."""

    def __init__(self) -> None:
        self.done = False  # the header section has ended (an empty line is there now)
        self._held = bytearray()  # the start of a line not judged yet
        self._in_field = False  # inside a line already judged a header field (up to its LF)
        self._first = True  # the next line is the message's first

    def feed(self, chunk: bytes) -> bytes:
        """``chunk`` as it is to be stored (an empty line may go in; a line start may be held)."""
        if self.done:
            return chunk
        out = bytearray()
        pos = 0
        while pos < len(chunk) and not self.done:
            end = chunk.find(b"\n", pos)
            stop = len(chunk) if end < 0 else end + 1
            if self._in_field:
                out += chunk[pos:stop]
            else:
                self._held += chunk[pos:stop]
                verdict = self._judge(complete=end >= 0)
                if verdict is None:  # not enough of the line yet to tell
                    break
                if not verdict:
                    out += b"\r\n"
                out += self._held
                self._held.clear()
                self._in_field = True
            pos = stop
            if end >= 0:
                self._in_field = self._first = False
        if self.done:  # the rest goes as it is (one copy of a message of megabytes, not three)
            return b"".join((out, memoryview(chunk)[pos:]))
        return bytes(out)

    def end(self) -> bytes:
        """What is still to be added at the end of the message."""
        if self.done:
            return b""
        if self._held:  # a last line without a line end
            field = self._judge(complete=True)
            return (bytes(self._held) + b"\r\n") if field else (b"\r\n" + bytes(self._held))
        return b"\r\n" if self._in_field else b""  # only header fields, no line end after the last

    def _judge(self, complete: bool) -> bool | None:
        """True: the held line is a header field (or its continuation); False: the body starts
        here without an empty line; None: more of the line is needed.  Sets ``done`` when the
        header section ends."""
        held = bytes(self._held)
        if held in (b"\r\n", b"\n"):
            self.done = True  # the empty line is there
            return True
        if _FIELD_LINE.match(held) or (not self._first and held[:1] in (b" ", b"\t")):
            return True
        if not complete and (held == b"\r" or (len(held) <= MAX_FIELD_NAME and _FIELD_NAME_SO_FAR.fullmatch(held))):
            return None
        self.done = True
        return False


def with_header_break(content: bytes) -> bytes:
    """``content`` (a whole message) with an empty line where its header section ends, if it
    has none there (``HeaderBreak``)."""
    breaker = HeaderBreak()
    return breaker.feed(content) + breaker.end()
