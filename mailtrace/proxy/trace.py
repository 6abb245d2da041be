"""One traced conversation: observer -> credential decoding -> injection check -> recorder.

Shared by the live proxy (``relay``) and capture import (``mailtrace.capture.importer``), so a
proxied session and a captured one are annotated the same way.
"""

from __future__ import annotations

from dataclasses import replace

from mailtrace.protocols.base import STARTTLS_VERBS, TLS_HANDSHAKE
from mailtrace.proxy.credentials import CredentialDecoder
from mailtrace.knowledge import because
from mailtrace.proxy.messages import message
from mailtrace.proxy.registry import make_observer
from mailtrace.transcript.event import Event, Kind, Note, Side, Tls
from mailtrace.transcript.recorder import SessionRecorder

INJECTION_RULE = "starttls-injection"  # knowledge: common.toml [violations]

# How each server opens a session (RFC 5321 §4.2 / §3.1 "220", RFC 1939 §4 "+OK", RFC 3501 §7.1 "* OK"
# or "* PREAUTH"): a capture that starts later shows some other line first.
GREETINGS = {"smtp": (b"220 ", b"220-"), "pop3": (b"+OK",), "imap": (b"* OK", b"* PREAUTH")}
# A made-up opening that brings an observer to the established state of a session whose start was
# not captured (greeting and login done, IMAP mailbox selected, SMTP PIPELINING so that nothing is
# flagged for want of it).  Fed to the observer only: its events are dropped, never recorded.
RESYNC_OPENINGS = {
    "smtp": ((Side.SERVER, b"220 -\r\n"), (Side.CLIENT, b"EHLO -\r\n"),
             (Side.SERVER, b"250-PIPELINING\r\n250 8BITMIME\r\n")),
    "pop3": ((Side.SERVER, b"+OK\r\n"), (Side.CLIENT, b"USER -\r\n"), (Side.SERVER, b"+OK\r\n"),
             (Side.CLIENT, b"PASS -\r\n"), (Side.SERVER, b"+OK\r\n")),
    "imap": ((Side.SERVER, b"* OK\r\n"), (Side.CLIENT, b"mailtrace-resync-1 LOGIN - -\r\n"),
             (Side.SERVER, b"mailtrace-resync-1 OK\r\n"), (Side.CLIENT, b"mailtrace-resync-2 SELECT INBOX\r\n"),
             (Side.SERVER, b"mailtrace-resync-2 OK\r\n")),
}


def looks_like_tls(data: bytes) -> bool:
    """A TLS ClientHello record: what a client sends first to an implicit-TLS server."""
    return len(data) >= 3 and data[0] == TLS_HANDSHAKE and data[1] == 3 and data[2] <= 4


class Tracer:
    def __init__(self, session: SessionRecorder, protocol: str, *, show_secrets: bool = False,
                 intercept: bool = False, lang: str = "en") -> None:
        self.session = session
        self.protocol = protocol
        self.lang = lang
        self.observer = make_observer(protocol)
        self.decoder = CredentialDecoder(protocol, show_secrets, lang)
        self.intercept = intercept
        self.parsing = True  # False once the rest is TLS nobody here can read
        self.starttls_pending = False  # a STARTTLS/STLS command awaits its answer
        self.unseen = {Side.CLIENT: 0, Side.SERVER: 0}  # TLS octets relayed unparsed
        self.fed = False  # any bytes yet (the mail protocols' servers speak first)
        self.midstream = False  # set by capture import: the capture may have missed the opening

    def feed(self, side: Side, data: bytes, t: float | None = None) -> bool:
        """Parse ``data``; True when the server has just accepted STARTTLS and ``intercept`` is
        set (the caller swaps to TLS, then calls ``tls_started``)."""
        if not self.fed:
            if self.parsing and side is Side.CLIENT and looks_like_tls(data):
                # the client opened with a TLS handshake: implicit TLS on a port we did not know as such
                self.implicit_tls(intercepted=False, t=t)
            elif self.parsing and self.midstream and data:
                if side is Side.CLIENT or not data.startswith(GREETINGS.get(self.protocol, (b"",))):
                    self._resync()
            self.fed = bool(data)
        if not self.parsing:
            self.unseen[side] += len(data)
            return False
        obs = self.observer
        record = self.record
        for event in obs.feed_client(data) if side is Side.CLIENT else obs.feed_server(data):
            record(event, t)
        if obs.encrypted:
            self.starttls_pending = False
            if self.intercept:
                return True
            self.tls_unseen(t)
        return False

    def tls_unseen(self, t: float | None = None) -> None:
        """STARTTLS accepted and nobody here decrypts what follows: the rest is counted, not parsed."""
        self.parsing = False
        self.tls_event("starttls", intercepted=False, t=t)

    def _resync(self) -> None:
        """The capture began after the opening: without it the observer would take the first
        commands for ones sent before the greeting or the login (false violations)."""
        for side, data in RESYNC_OPENINGS.get(self.protocol, ()):
            if side is Side.CLIENT:
                self.observer.feed_client(data)
            else:
                self.observer.feed_server(data)

    def record(self, event: Event, t: float | None = None) -> None:
        if event.kind is Kind.TLS:
            return  # the tracer records its own TLS event, which says what was seen
        if event.side is Side.CLIENT and event.kind in (Kind.COMMAND, Kind.DATA):
            if self.starttls_pending and not any("tls" in n.rule for n in event.notes):
                note = Note(INJECTION_RULE, "plaintext sent after STARTTLS, before the TLS handshake")
                event = replace(event, notes=event.notes + (note,))
            if event.kind is Kind.COMMAND and event.verb.upper() in STARTTLS_VERBS:
                self.starttls_pending = True
        elif (event.side is Side.SERVER and event.kind is Kind.REPLY and self.starttls_pending
              and event.tag != "*" and event.raw[3:4] != b"-"):
            self.starttls_pending = False  # the (last line of the) answer
        event = self.decoder.feed(event)
        self.session.record(event, t)

    def tls_started(self, t: float | None = None) -> None:
        """Both sides now speak TLS through us: keep parsing the decrypted dialogue."""
        self.tls_event("starttls", intercepted=True, t=t)
        for event in self.observer.tls_started():
            self.record(event, t)
        self.parsing = True

    def implicit_tls(self, intercepted: bool, t: float | None = None) -> None:
        """TLS from the first byte (465/993/995): readable only when the proxy intercepts it."""
        self.tls_event("implicit", intercepted=intercepted, t=t, mark="" if intercepted else "tls-implicit")
        self.parsing = intercepted
        if intercepted:
            self.observer.tls_started()

    def tls_event(self, how: str, intercepted: bool, t: float | None = None, mark: str = "") -> None:
        # mark: the [proxy] key of the message, so each renderer says it in its own language
        # (knowledge.tls_mark); detail: the same in the proxy's --lang.
        mark = mark or ("tls-intercepted" if intercepted else "tls-relayed")
        tls = Tls(how=how, intercepted=intercepted, mark=mark, detail=message(mark, self.lang))
        self.session.record(Event(side=Side.NONE, kind=Kind.TLS, tls=tls, redacted=(tls.detail + "\r\n").encode()), t)

    def finish(self, side: Side, reason: str, t: float | None = None) -> None:
        if self.session.closed:
            return
        if self.parsing:
            for event in self.observer.close():
                self.record(event, t)
        if self.unseen[Side.CLIENT] or self.unseen[Side.SERVER]:
            reason = because("tls-unseen", reason,
                             client=self.unseen[Side.CLIENT], server=self.unseen[Side.SERVER])
        self.session.close(side, reason, t)
