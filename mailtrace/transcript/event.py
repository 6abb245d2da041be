"""The one transcript record shared by the servers, the proxy, pcap import and the grader.

Every line a client or a server puts on the wire becomes one ``Event``.  Protocol cores
(``mailtrace.protocols``) create events with only the protocol facts filled in (side, kind,
raw bytes, verb, code, state, notes, and the typed facts their parser found: a command's
``args``, a reply's ``response_code``, ...); a ``SessionRecorder`` stamps them with the session
id, sequence number and time before handing them to the sinks (terminal, JSONL, text, HTML, ...).

Explanations are *not* stored here: renderers look them up in ``mailtrace.knowledge`` at
render time, so an old transcript gains from better text.  Violations (bare LF, missing
angle brackets, tag reuse, ...) are facts found by the parser, so they are stored as
``Note`` objects on the event that contains them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Mapping


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


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A stored message an event touched (``mailtrace.transcript.links`` tells the story): named as
    the store names it, user, mailbox and UID (RFC 3501 §2.3.1.1), plus the Maildir key when known."""

    action: str  # a ``links.Action`` value: "delivered", "read", "flagged", "copied", ...
    user: str
    mailbox: str
    uid: int
    key: str = ""  # Maildir unique name, when the core has it at hand

    def to_list(self) -> list:
        return [getattr(self.action, "value", self.action), self.user, self.mailbox, self.uid, self.key]

    @classmethod
    def from_list(cls, item: list) -> "MessageRef":
        action, user, mailbox, uid, *rest = item
        from mailtrace.transcript.links import Action  # the enum lives with the story it tells
        return cls(Action(action), str(user), str(mailbox), int(uid), str(rest[0]) if rest else "")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Args:
    """A command's arguments as the protocol's own parser read them (only what it found).

    Filled in by the core and the observer alike, so the grader and the web view never parse a
    command line a second time.
    """

    reverse_path: str | None = None  # SMTP MAIL FROM:<...>, "" for the null path <> (RFC 5321 §4.1.1.2)
    forward_path: str | None = None  # SMTP RCPT TO:<...> (RFC 5321 §4.1.1.3)
    params: tuple[tuple[str, str | None], ...] = ()  # SMTP ESMTP parameters: (("SIZE", "120"), ("SMTPUTF8", None))
    message: int | None = None  # POP3 message number (RETR, DELE, TOP, LIST, UIDL; RFC 1939 §5)
    lines: int | None = None  # POP3 TOP's line count (RFC 1939 §7)
    mailbox: str = ""  # IMAP mailbox named by the command (SELECT, CREATE, APPEND, COPY's target...)
    sequence_set: str = ""  # IMAP sequence set as sent ("1:*", "2,4"; RFC 3501 §9 sequence-set)
    size: int | None = None  # IMAP APPEND: the message's octets, as its literal announced them (RFC 3501 §6.3.11)

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(Args) if getattr(self, f.name) != f.default]
        return f"Args({', '.join(shown)})"

    def to_dict(self) -> dict:
        """The arguments that differ from the defaults (the null path "" is kept: it is not None)."""
        d: dict = {}
        for name, default in _ARGS_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                d[name] = [list(p) for p in value] if name == "params" else value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Args":
        kw = {k: v for k, v in d.items() if k in Args.__dataclass_fields__}
        if "params" in kw:
            kw["params"] = tuple((str(k), None if v is None else str(v)) for k, v in kw["params"])
        for name in ("message", "lines", "size"):
            if kw.get(name) is not None:
                kw[name] = int(kw[name])
        return cls(**kw)


_ARGS_DEFAULTS = tuple((f.name, f.default) for f in fields(Args))  # (computed once: fields() is slow)


@dataclass(frozen=True, slots=True)
class Clause:
    """One part of a reason: ``key`` names an entry of ``[close]`` in knowledge/common.toml (so each
    renderer words it in its reader's language), ``fields`` fill in its ``{names}``; ``key`` ""
    holds a free text (an error message) in ``fields["text"]``."""

    key: str
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """Why a session closed (CLOSE) or bytes are missing (GAP)."""

    text: str = ""  # the reason in English: what version-1 readers and plain logs show
    clauses: tuple[Clause, ...] = ()  # the same, as knowledge keys (knowledge.close_reason words them)


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """Who talked to whom (OPEN)."""

    client: str = ""  # "127.0.0.1:40000", "[::1]:40000"
    server: str = ""
    mode: str = ""  # "lab", "proxy", "capture", "grader"
    started: float = 0.0  # wall-clock time the session opened (seconds since the epoch; 0: unknown)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    """How encryption started (TLS)."""

    how: str = ""  # "starttls" (SMTP, IMAP), "stls" (POP3), "implicit" (465/993/995)
    seen: bool = True  # False: an observer saw the handshake start but not the decrypted dialogue
    intercepted: bool | None = None  # the proxy decrypted it (True) or relayed it unseen (False)
    mark: str = ""  # the ``[proxy]`` knowledge key of the proxy's message (knowledge.tls_mark)
    detail: str = ""  # the same message in the proxy's --lang


@dataclass(slots=True, kw_only=True, repr=False, unsafe_hash=True)
class Event:
    """One line (or block) on the wire, or one session-level fact.

    The first fields say what was on the wire; the typed facts after them are set only on the
    kinds named in their comments (empty defaults everywhere else).

    An event is never changed once a sink has it (the recorder stamps a new one in place
    before any sink sees it, and copies one already stamped): treat it as frozen.  It is not
    declared ``frozen`` only for speed: a frozen dataclass's ``__init__`` sets each of these 35
    fields through ``object.__setattr__``, four times slower, and the cores make one event per
    line on the wire.  (It hashes by value, as a frozen one does.)
    """

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
    # --- typed facts, by kind -----------------------------------------------------------------
    args: Args | None = None  # COMMAND: the arguments as parsed
    response_code: str = ""  # REPLY: a knowledge "codes" key: IMAP/POP3 [CODE], an EHLO keyword
    user: str = ""  # REPLY accepting a login: who the session belongs to from then on
    messages: tuple[MessageRef, ...] = ()  # REPLY: the stored messages this reply reports on
    continued: bool = False  # IMAP: a later line of one command (after a literal) or of one response
    command: str = ""  # LITERAL: the verb of the command the literal belongs to
    spooled: bool = False  # LITERAL: written to disk as it came (too big to hold in memory)
    incomplete: str = ""  # DATA: why the block never ended (the connection closed first, ...)
    pipelined: bool = False  # COMMAND: sent before the previous reply (RFC 2920); no round trip
    arrived: str = ""  # client line, graded runs: when it came relative to the reply it should wait for
    partial: str = ""  # with arrived == "mid-line": the reply line's first octets the client had seen
    scripted: bool = False  # REPLY written by a grading script rather than the core
    unsolicited: bool = False  # REPLY put before the real reply by a grading script (answers nothing)
    peer: Peer | None = None  # OPEN
    reason: Reason | None = None  # CLOSE, GAP
    missing: int = 0  # GAP: octets the capture lacks
    tls: Tls | None = None  # TLS
    # Stamped by the recorder:
    session: str = ""
    seq: int = 0
    t: float = 0.0  # seconds since the session opened (monotonic clock)

    def __post_init__(self) -> None:
        # A secret line's notes must not quote it ("unknown command PASS<TAB>pw", a NUL in
        # "pw\x00"): they keep their rule, not their detail.  Decided once, here, for every sink.
        if self.redacted is not None and self.notes and any(n.detail for n in self.notes):
            self.notes = tuple(Note(n.rule) for n in self.notes)

    def __repr__(self) -> str:
        """Only the fields that are set: a test failure shows what differs, not 30 defaults."""
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in _FIELDS
                 if f.name in ("side", "kind") or getattr(self, f.name) != f.default]
        return f"Event({', '.join(shown)})"

    @property
    def octets(self) -> int:
        """How many octets this event carried on the wire."""
        return self.size if self.size >= 0 else len(self.raw)

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
        # A field-by-field copy without __init__: several times faster than dataclasses.replace,
        # which matters at hundreds of events per IMAP session (a FETCH of 100 messages is 300).
        new = object.__new__(Event)
        for name in _COPIED:
            setattr(new, name, getattr(self, name))
        new.protocol = self.protocol
        return new.stamp(session, seq, t, protocol)

    def stamp(self, session: str, seq: int, t: float, protocol: str = "") -> "Event":
        """Stamp this event in place (the recorder does, once, on an event no sink has seen yet:
        a core's brand-new event is not built a second time just to add four fields)."""
        if not self.protocol:
            self.protocol = protocol
        self.session = session
        self.seq = seq
        self.t = t
        return self


_FIELDS = fields(Event)
_COPIED = tuple(f.name for f in _FIELDS if f.name not in ("protocol", "session", "seq", "t"))


# --- Reading the version-1 shape: ``info`` strings -> typed facts ---------------------------------
# Version-1 JSONL files (and the knowledge/recorder helpers that take a reason in that shape) keep
# an event's facts as strings in one ``info`` dict; this reads them.

def facts_from_info(info: Mapping[str, str]) -> dict:
    """The typed Event fields for a version-1 ``info`` dict (keys it does not know are dropped:
    a reader keeps what it understands of an older or edited file)."""
    import json

    facts: dict = {}
    peer: dict = {}
    tls: dict = {}
    reason: dict = {}
    for key, value in info.items():
        value = "" if value is None else str(value)
        if key in ("client", "server", "mode"):
            peer[key] = value
        elif key == "started":
            peer["started"] = _number(value, float)
        elif key == "how":
            tls["how"] = value
        elif key == "seen":
            tls["seen"] = value != "no"
        elif key == "intercepted":
            tls["intercepted"] = value == "yes"
        elif key in ("mark", "detail"):
            tls[key] = value
        elif key == "reason":
            reason["text"] = value
        elif key == "why":
            try:
                clauses = json.loads(value) if value else []
                reason["clauses"] = tuple(Clause(str(k), tuple((str(n), str(v)) for n, v in dict(f).items()))
                                          for k, f in clauses)
            except (ValueError, TypeError):
                reason["clauses"] = ()
        elif key == "octets":
            facts["missing"] = _number(value, int)
        elif key == "code":
            facts["response_code"] = value
        elif key == "messages":
            try:
                facts["messages"] = tuple(MessageRef.from_list(item) for item in json.loads(value))
            except (ValueError, TypeError):
                facts["messages"] = ()
        elif key in ("user", "command", "incomplete", "arrived", "partial"):
            facts[key] = value
        elif key in ("continued", "spooled", "pipelined", "scripted", "unsolicited"):
            facts[key] = value not in ("", "no", "0")
    if peer:
        facts["peer"] = Peer(**peer)
    if tls:
        facts["tls"] = Tls(**tls)
    if reason:
        facts["reason"] = Reason(**reason)
    return facts


def _number(text: str, kind: type) -> float | int:
    """A number written as text in ``info``; 0 when it is not one (version-1 readers did the same:
    an edited or normalised transcript may hold "STARTED" there)."""
    try:
        return kind(text or 0)
    except ValueError:
        return kind(0)


def command(raw: bytes, verb: str, state: str = "", notes: tuple[Note, ...] = (), **kw) -> Event:
    return Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=raw, verb=verb, state=state, notes=notes, **kw)


def reply(raw: bytes, code: str, verb: str = "", state: str = "", notes: tuple[Note, ...] = (), **kw) -> Event:
    return Event(side=Side.SERVER, kind=Kind.REPLY, raw=raw, code=code, verb=verb, state=state, notes=notes, **kw)
