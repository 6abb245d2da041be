"""A protocol-agnostic observer: one event per CRLF line on each side.

Used for protocols mailtrace has no observer for (and as a stand-in while one is missing).  It
knows just enough to stay honest: the reply code shapes of SMTP (RFC 5321 §4.2), POP3
(RFC 1939 §3) and IMAP (RFC 3501 §7), an SMTP DATA body up to CRLF.CRLF (RFC 5321 §4.1.1.4),
and STARTTLS/STLS (RFC 3207 §4, RFC 2595 §4, RFC 3501 §6.2.1): after a positive answer the
bytes are TLS records and are no longer parsed.
"""

from __future__ import annotations

from mailtrace.protocols.base import MAX_OBSERVED_LINE, STARTTLS_VERBS
from mailtrace.transcript.event import Event, Kind, Side



def _reply_fields(line: bytes) -> tuple[str, str]:
    """(tag, code) of a server line in any of the three protocols."""
    text = line.decode("latin-1").rstrip("\r\n")
    if len(text) >= 3 and text[:3].isdigit():
        return "", text[:3]  # SMTP "250 ..." / "250-..."
    if text.startswith("+OK") or text.startswith("-ERR"):
        return "", text.split(" ", 1)[0]
    parts = text.split(" ", 2)
    if parts[0] == "+":
        return "+", "+"
    if len(parts) >= 2 and parts[1].upper() in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
        return parts[0], parts[1].upper()
    if parts[0] == "*":
        return "*", ""
    return "", ""


def _positive(code: str) -> bool:
    return code.startswith("2") or code in ("+OK", "OK")


class LineObserver:
    """Observer interface (``mailtrace.protocols.base.Observer``) by CRLF lines."""

    def __init__(self, protocol: str = "") -> None:
        self.protocol = protocol
        self._buf = {Side.CLIENT: b"", Side.SERVER: b""}
        self._encrypted = False
        self._starttls_tag: str | None = None  # set while a STARTTLS awaits its answer
        self._in_data = False  # SMTP: between 354 and CRLF.CRLF
        self._data_wanted = False  # SMTP: DATA sent, waiting for 354
        self._data_body = b""

    @property
    def encrypted(self) -> bool:
        return self._encrypted

    def feed_client(self, data: bytes) -> list[Event]:
        return self._feed(Side.CLIENT, data)

    def feed_server(self, data: bytes) -> list[Event]:
        return self._feed(Side.SERVER, data)

    def tls_started(self) -> list[Event]:
        self._encrypted = False  # intercepted: keep parsing the decrypted dialogue
        self._buf = {Side.CLIENT: b"", Side.SERVER: b""}
        return []

    def close(self) -> list[Event]:
        out: list[Event] = []
        if self._in_data and self._data_body:
            out.append(Event(side=Side.CLIENT, kind=Kind.DATA, raw=self._data_body, verb="DATA"))
            self._data_body = b""
        for side, rest in self._buf.items():
            if rest and not self._encrypted:
                out.append(self._line(side, rest))
            self._buf[side] = b""
        return out

    def _feed(self, side: Side, data: bytes) -> list[Event]:
        if self._encrypted:
            return []
        buf = self._buf[side] + data
        out: list[Event] = []
        start = 0
        while not self._encrypted:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end + 1]
            start = end + 1
            if side is Side.CLIENT and self._in_data:
                self._data_body += line
                if line in (b".\r\n", b".\n"):
                    out.append(Event(side=side, kind=Kind.DATA, raw=self._data_body, verb="DATA"))
                    self._data_body, self._in_data = b"", False
                continue
            out.append(self._line(side, line))
        rest = buf[start:]
        if self._encrypted:
            rest = b""
        elif len(rest) > MAX_OBSERVED_LINE:
            out.append(self._line(side, rest))
            rest = b""
        self._buf[side] = rest
        return out

    def _line(self, side: Side, line: bytes) -> Event:
        if side is Side.CLIENT:
            words = line.decode("latin-1").split()
            tag = ""
            if self.protocol == "imap" and len(words) >= 2:
                tag, words = words[0], words[1:]
            verb = words[0].upper() if words else ""
            if verb in STARTTLS_VERBS:
                self._starttls_tag = tag
            if verb == "DATA" and self.protocol in ("smtp", ""):
                self._data_wanted = True
            return Event(side=side, kind=Kind.COMMAND, raw=line, verb=verb, tag=tag)
        tag, code = _reply_fields(line)
        if code == "354" and self._data_wanted:
            self._in_data, self._data_wanted = True, False
        final = not (len(line) > 3 and line[3:4] == b"-")  # SMTP multi-line: "250-" (RFC 5321 §4.2.1)
        if self._starttls_tag is not None and code and final and (tag in ("", self._starttls_tag)):
            if code != "+" and tag != "*":
                if _positive(code):
                    self._encrypted = True
                self._starttls_tag = None
        return Event(side=side, kind=Kind.REPLY, raw=line, code=code, tag=tag)
