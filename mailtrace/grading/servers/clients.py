"""The grader's scripted clients: play a scenario's steps against a student's server.

A client connects to 127.0.0.1:PORT, sends each step's bytes and reads the reply.  Both sides go
through the protocol's observer (``SmtpObserver`` / ``Pop3Observer``), the same parser that
judges real servers in the proxy and pcap import, so:

* the transcript the student reads is the one every other part of mailtrace records;
* a reply is complete when the observer says so (the SMTP line with a space after the code,
  RFC 5321 §4.2.1; the POP3 status line, or the ".CRLF" after a multi-line +OK, RFC 1939 §3);
* reply syntax mistakes are the observer's notes (``bad-reply``, ``bad-status``, ``bare-lf``...).

Sans-judgement: this module records what happened (:class:`StepResult`); the checks judge.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from mailtrace.transcript.event import Event, Kind, Side
from mailtrace.transcript.recorder import Recorder

REPLY_TIMEOUT = 5.0  # seconds a step waits for its reply
BIG_REPLY_TIMEOUT = 20.0  # for a step sending or reading a large message
#: octets of one reply after which it is taken as one that never ends (a server flooding its
#: client): far above the largest a scenario asks for (the "mega" message, about 1 MB)
MAX_REPLY_OCTETS = 8 * 1024 * 1024
CLOSE_TIMEOUT = 2.0  # seconds the server has to close after QUIT


def observer_for(protocol: str):
    if protocol == "smtp":
        from mailtrace.protocols.smtp.observer import SmtpObserver

        return SmtpObserver()
    from mailtrace.protocols.pop3 import Pop3Observer

    return Pop3Observer()


@dataclass
class StepResult:
    session: str  # transcript session id
    index: int  # position in the session's steps (-1: the greeting)
    step: dict[str, Any]
    sent: Event | None = None  # the (last) client event of this step
    replies: list[Event] = field(default_factory=list)  # server events of its reply (DATA: a POP3 body)
    code: str = ""  # reply code of the last reply line ("250", "+OK", "-ERR"), "" when none
    problem: str = ""  # no (whole) reply: "timeout", "closed", "too long" (MAX_REPLY_OCTETS)
    closed: bool | None = None  # a step with `closes`: did the server close the connection
    codes: list[str] = field(default_factory=list)  # a step with `replies = N` (pipelining): each reply's code

    @property
    def body(self) -> bytes | None:
        """A POP3 multi-line body as sent (byte-stuffed, terminator included), None when none."""
        for e in self.replies:
            if e.kind is Kind.DATA:
                return e.raw
        return None

    @property
    def last_reply(self) -> Event | None:
        lines = [e for e in self.replies if e.kind is Kind.REPLY]
        return lines[-1] if lines else None


class Client:
    """One connection of a scripted client, recorded as one transcript session."""

    def __init__(self, protocol: str, port: int, recorder: Recorder, name: str) -> None:
        self.protocol = protocol
        self.observer = observer_for(protocol)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
        self.session = recorder.session(protocol, client=f"grader {name}", server=f"127.0.0.1:{port}",
                                        mode="grade")
        self.closed_by_server = False
        self._pending: list[Event] = []  # recorded events not yet given to a step
        self._inbox: list[Event] = []  # server events not yet returned by read_reply

    # -- recording ------------------------------------------------------------------------
    def _record(self, events: list[Event]) -> list[Event]:
        """Stamp and record the observer's events (the transcript); returns the stamped ones."""
        stamped = [self.session.record(e) for e in events]
        self._pending += stamped
        return stamped

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed_by_server = True
        self._record(self.observer.feed_client(data))

    def take(self) -> list[Event]:
        events, self._pending = self._pending, []
        return events

    # -- reading --------------------------------------------------------------------------
    def read_reply(self, timeout: float = REPLY_TIMEOUT) -> tuple[list[Event], str]:
        """Read until the observer has seen one complete reply; (its events, problem).

        Server events beyond that reply (pipelined replies in the same segment) wait in
        ``_inbox`` for the next call."""
        deadline = time.monotonic() + timeout
        received = 0
        while True:
            end = self._reply_end()
            if end:
                got, self._inbox = self._inbox[:end], self._inbox[end:]
                return got, ""
            left = deadline - time.monotonic()
            if left <= 0:
                return self._take_inbox(), "timeout"
            if received > MAX_REPLY_OCTETS:
                return self._take_inbox(), "too long"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return self._take_inbox(), "timeout"
            except OSError:
                data = b""
            if not data:
                self.closed_by_server = True
                return self._take_inbox(), "closed"
            received += len(data)
            events = self._record(self.observer.feed_server(data))
            self._inbox += [e for e in events if e.side is Side.SERVER]

    def _take_inbox(self) -> list[Event]:
        got, self._inbox = self._inbox, []
        return got

    def _reply_end(self) -> int:
        """How many events of ``_inbox`` make its first complete reply (0: not complete yet)."""
        from mailtrace.protocols.smtp.syntax import continues

        for i, e in enumerate(self._inbox):
            if self.protocol == "smtp":
                if e.kind is Kind.REPLY and (not e.code or not continues(e.raw)):
                    return i + 1
                continue
            if e.kind is Kind.DATA:
                return i + 1
            if e.kind is Kind.REPLY:
                following = self._inbox[i + 1] if i + 1 < len(self._inbox) else None
                if following is not None and following.kind is Kind.DATA:
                    continue  # the status line of a multi-line response: its body follows
                # the last event: complete unless the observer is gathering its body
                # (the observer's _body is the multi-line body in progress, None between responses)
                if following is None and self.observer._body is not None:
                    return 0
                return i + 1
        return 0

    def wait_closed(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Has the server closed the connection (within ``timeout``)?"""
        if self.closed_by_server:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                data = b""
            if not data:
                self.closed_by_server = True
                return True
            self._record(self.observer.feed_server(data))
        return False

    def close(self) -> None:
        """Close our side, then wait (a little) for the server to close its own: by then it has
        seen the end of the session (released a POP3 lock, discarded an unfinished message)."""
        if not self.closed_by_server:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.wait_closed()
        self._record(self.observer.close())
        try:
            self.sock.close()
        except OSError:
            pass
        self.session.close(Side.SERVER if self.closed_by_server else Side.CLIENT)
