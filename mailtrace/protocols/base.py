"""What a sans-I/O server core hands back to the I/O shell that drives it.

A core (``SmtpServerConnection``, ``Pop3ServerConnection``, ``ImapServerConnection``) is fed
bytes and returns a list of *outputs*, in order:

* ``Event``      a transcript event to record (``mailtrace.transcript.event.Event``);
* ``Send``       bytes to write to the client;
* ``StartTLS``   switch the connection to TLS now (after writing what came before);
* ``Close``      close the connection (after writing what came before);
* ``Pending``    slow work (a fsync'd Maildir delivery): the shell runs ``job()`` in a worker
                 thread, then calls ``resume(result)`` for the outputs that follow.  While a
                 ``Pending`` is outstanding the core buffers any further input it is fed.

The core never touches sockets, asyncio or the clock; storage is injected as an object.
The asyncio shell that runs a core is ``mailtrace.servers.base``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

from mailtrace.transcript.event import Event, Reason

#: What every observer (and the proxy) knows about the wire, whatever the protocol:
MAX_OBSERVED_LINE = 64 * 1024  # longer "lines" are cut (no mail protocol allows lines near this)
TLS_HANDSHAKE = 0x16  # first octet of a TLS handshake record (RFC 8446 §5.1: ContentType handshake(22))
STARTTLS_VERBS = frozenset({"STARTTLS", "STLS"})  # SMTP and IMAP (RFC 3207, RFC 3501 §6.2.1); POP3 (RFC 2595 §4)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    reason: str | Reason = ""  # free text, or knowledge.because(KEY, ...) to be translated


@dataclass(frozen=True, slots=True)
class Pending:
    job: Callable[[], Any]
    resume: Callable[[Any], list["Output"]]


Output = Union[Event, Send, StartTLS, Close, Pending]


class ServerCore(Protocol):
    """The interface every server core offers to ``mailtrace.servers.base``."""

    #: seconds of client silence before ``idle_timeout()`` is called (0: never)
    idle_timeout_seconds: float

    def start(self) -> list[Output]:
        """The connection is open: usually the greeting."""
        ...

    def receive(self, data: bytes) -> list[Output]:
        """Bytes arrived from the client (any chunk size: one byte or many lines)."""
        ...

    def eof(self) -> list[Output]:
        """The client closed the connection or it was lost."""
        ...

    def idle_timeout(self) -> list[Output]:
        """The client was silent for ``idle_timeout_seconds`` (e.g. SMTP 421, RFC 5321 §4.5.3.2.7)."""
        ...

    def tls_started(self) -> list[Output]:
        """The TLS handshake after a ``StartTLS`` output succeeded."""
        ...

    def notify(self) -> list[Output]:
        """Something changed outside this connection (new mail, an EXPUNGE elsewhere): the core
        may return untagged updates (IMAP IDLE) or nothing."""
        ...


def send_all(outputs: list[Output]) -> bytes:
    """The bytes of every ``Send`` in ``outputs`` (handy in unit tests)."""
    return b"".join(o.data for o in outputs if isinstance(o, Send))


def settle(outputs: list[Output]) -> list[Output]:
    """``outputs`` with every ``Pending`` run at once, in place (unit tests: what a shell does,
    without threads)."""
    out: list[Output] = []
    queue = list(outputs)
    while queue:
        item = queue.pop(0)
        if isinstance(item, Pending):
            queue[0:0] = item.resume(item.job())
        else:
            out.append(item)
    return out


def events_of(outputs: list[Output]) -> list[Event]:
    return [o for o in outputs if isinstance(o, Event)]


class Observer(Protocol):
    """Parses *both* sides of a conversation it does not take part in (proxy, pcap import).

    Each protocol module offers one (``SmtpObserver``, ``Pop3Observer``, ``ImapObserver``).
    It frames by protocol, never by chunk: a multi-line reply, a DATA body up to CRLF.CRLF,
    a POP3 multi-line response, an IMAP literal each become whole events however the bytes
    were split.  It flags the same violations as the server core (bare LF, missing angle
    brackets, tag reuse, a command before the greeting, ...).
    """

    def feed_client(self, data: bytes) -> list[Event]:
        """Bytes the client sent."""
        ...

    def feed_server(self, data: bytes) -> list[Event]:
        """Bytes the server sent."""
        ...

    def tls_started(self) -> list[Event]:
        """The proxy intercepted a STARTTLS/STLS and both sides now speak TLS through it."""
        ...

    @property
    def encrypted(self) -> bool:
        """True after a successful STARTTLS/STLS (server said 220/+OK/OK): from here on the
        bytes are TLS records, which the observer does not parse (unless tls_started())."""
        ...

    def close(self) -> list[Event]:
        """The connection ended: flush anything incomplete (a DATA body cut short...)."""
        ...


def wire_text(text: str) -> str:
    """A human-readable reply text as it may go on the wire: our texts cite RFC sections with
    "§", which is not ASCII; reply texts are 7-bit for clients that did not ask for UTF-8
    (RFC 5321 §4.2, RFC 1939 §3, RFC 3501 §9 ``text``), so "§4.2" is sent as "section 4.2"."""
    return text.replace("§", "section ")
