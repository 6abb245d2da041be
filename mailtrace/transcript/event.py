"""The one transcript record shared by the servers, the proxy, pcap import and the grader.

Every line a client or a server puts on the wire becomes one ``Event``.  Protocol cores
(``mailtrace.protocols``) create events with only the protocol facts filled in (side, kind,
raw bytes, verb, code, state, notes); a ``SessionRecorder`` stamps them with the session id,
sequence number and time before handing them to the sinks (terminal, JSONL, text, ...).

Explanations are *not* stored here: renderers look them up in ``mailtrace.knowledge`` at
render time, so an old transcript gains from better text.  Violations (bare LF, missing
angle brackets, tag reuse, ...) are facts found by the parser, so they are stored as
``Note`` objects on the event that contains them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Side(str, enum.Enum):
    """Who put the bytes on the wire."""

    CLIENT = "C"
    SERVER = "S"
    NONE = "-"  # session-level events (open, close, gap) that belong to no side


class Kind(str, enum.Enum):
    OPEN = "open"  # connection accepted / seen (raw is empty)
    COMMAND = "command"  # one client command line (SMTP/POP3 command, IMAP tagged command)
    REPLY = "reply"  # one server reply line (SMTP reply line, +OK/-ERR, IMAP response line)
    DATA = "data"  # a folded block: SMTP DATA body, POP3 multi-line body, AUTH payload line
    LITERAL = "literal"  # an IMAP literal {n} (the n octets)
    TLS = "tls"  # encryption starts here (handshake), or encrypted bytes relayed unseen
    CLOSE = "close"  # connection closed (by whom: see ``side``)
    VIOLATION = "violation"  # a protocol mistake not tied to one line
    GAP = "gap"  # bytes missing from a capture (pcap import)


@dataclass(frozen=True, slots=True)
class Note:
    """A protocol violation found by the parser.

    ``rule`` is a knowledge key such as ``"bare-lf"`` (looked up under the event's protocol's
    ``violations`` table); ``detail`` is free text with the specifics (e.g. the bad argument).
    """

    rule: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    side: Side
    kind: Kind
    raw: bytes = b""  # exact wire bytes, CRLF included; exporters never re-encode
    protocol: str = ""  # "smtp", "pop3", "imap"
    verb: str = ""  # "EHLO", "RETR", "FETCH" (commands; for replies, the command answered)
    code: str = ""  # "250", "+OK", "-ERR", "OK", "NO", "BAD", "BYE", "+" (replies)
    tag: str = ""  # IMAP tag, "*" for untagged, "+" for continuation
    state: str = ""  # protocol state after this event ("handshake", "TRANSACTION", "selected")
    notes: tuple[Note, ...] = ()
    size: int = -1  # octets on the wire when ``raw`` was cut short (-1: raw is complete)
    redacted: bytes | None = None  # what to show/save instead of raw unless secrets are shown
    info: dict[str, str] = field(default_factory=dict)  # extra facts: peer addresses, ...
    # Stamped by the recorder:
    session: str = ""
    seq: int = 0
    t: float = 0.0  # seconds since the session opened (monotonic clock)

    def __post_init__(self) -> None:
        # A secret line's notes must not quote it ("unknown command PASS<TAB>pw", a NUL in
        # "pw\x00"): they keep their rule, not their detail.  Decided once, here, for every sink.
        if self.redacted is not None and self.notes and any(n.detail for n in self.notes):
            object.__setattr__(self, "notes", tuple(Note(n.rule) for n in self.notes))

    @property
    def octets(self) -> int:
        """How many octets this event carried on the wire."""
        return self.size if self.size >= 0 else len(self.raw)

    @property
    def is_secret(self) -> bool:
        return self.redacted is not None

    def shown(self, show_secrets: bool = False) -> bytes:
        """The bytes to display or save: the redacted form unless secrets were asked for."""
        if self.redacted is not None and not show_secrets:
            return self.redacted
        return self.raw

    def text(self, show_secrets: bool = False) -> str:
        """The line as text, without its line ending (undecodable bytes escaped)."""
        data = self.shown(show_secrets)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n") or data.endswith(b"\r"):
            data = data[:-1]
        return data.decode("utf-8", errors="backslashreplace")

    def stamped(self, session: str, seq: int, t: float, protocol: str = "") -> "Event":
        """A copy with the recorder's stamps (and ``protocol`` when the event has none)."""
        # Every field spelled out: twice as fast as dataclasses.replace, which matters at
        # hundreds of events per IMAP session (a FETCH of 100 messages is 300 events).
        return Event(side=self.side, kind=self.kind, raw=self.raw, protocol=self.protocol or protocol, verb=self.verb,
                     code=self.code, tag=self.tag, state=self.state, notes=self.notes, size=self.size,
                     redacted=self.redacted, info=self.info, session=session, seq=seq, t=t)


def command(raw: bytes, verb: str, state: str = "", notes: tuple[Note, ...] = (), **kw) -> Event:
    return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw, verb=verb, state=state, notes=notes, **kw)


def reply(raw: bytes, code: str, verb: str = "", state: str = "", notes: tuple[Note, ...] = (), **kw) -> Event:
    return Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=code, verb=verb, state=state, notes=notes, **kw)
