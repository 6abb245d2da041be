"""Fault injection as data: a layer between the scripted server's shell and a real protocol core.

Theory of operation: the scripted server runs the *real* core (``SmtpServerConnection``,
``Pop3ServerConnection``, ``ImapServerConnection``) and this layer rewrites what the core says,
never what it understands.  The core's outputs for one chunk of client input are grouped per
client event (a command, a DATA body, a literal): the ``Send`` outputs and the server ``Event``
records that follow a client event are its reply.  A :class:`Fault` that matches the client event
(by verb, by a substring of the line, by occurrence) can

* replace the reply (``reply``: new lines, e.g. ``550 5.1.1 no such user``; ``{tag}`` is the IMAP tag),
* put lines before it (``before``: unsolicited ``* 4 EXISTS``, ``* OK [ALERT] ...``),
* hold it back (``delay`` seconds), cut it into TCP segments (``split`` octets per segment,
  ``split_delay`` apart, in the client program's own time: see scripted.pause_in_client_time)
  or put all of it into one segment (``coalesce``),
* withhold it and everything after it (``action = "silence"``: the client must time out),
* close the connection instead of replying (``action = "close"``) or right after (``"close-after"``).

The greeting has its own overrides (``greeting`` lines, ``greeting_delay``, ``greeting_close``),
and ``split_all`` cuts every reply into segments (the "one recv() is not one reply" scenarios).

The layer is sans-I/O like the core: it returns *actions* (record an event, write bytes, sleep,
close) that the shell in :mod:`mailtrace.grading.scripted` carries out in order.  Overridden
replies are recorded as the core would have: a server ``REPLY`` event per line, with the code
parsed from the line, so checks and feedback read one honest transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mailtrace.knowledge import because
from mailtrace.protocols.base import Close, Pending, Send
from mailtrace.protocols.lines import literal_announced
from mailtrace.transcript.event import Event, Kind, Reason, Side

ACTIONS = ("reply", "silence", "close", "close-after")
CLIENT_KINDS = (Kind.COMMAND, Kind.DATA, Kind.LITERAL)


@dataclass(frozen=True)
class Fault:
    on: str = "*"  # verb ("RCPT", "PASS", "SELECT"); "." = end of a DATA body; "*" = any
    match: str = ""  # the client line must contain this (case-insensitive)
    nth: int = 0  # only the nth matching event (1-based); 0 = every one
    reply: tuple[str, ...] = ()  # replacement reply lines (without CRLF)
    before: tuple[str, ...] = ()  # lines sent before the reply (unsolicited responses)
    delay: float = 0.0
    split: int = 0  # octets per segment; -1: each line in two; -3: the first line in two, then the rest segments
    split_delay: float = 0.05
    coalesce: bool = False
    action: str = "reply"
    core_input: str = ""  # a line fed to the core, its outputs discarded, after an override
                          # (e.g. "RSET": the core forgets a MAIL the script refused)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Fault":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        for key in ("reply", "before"):
            if isinstance(d.get(key), str):
                d[key] = (d[key],)
            if key in d:
                d[key] = tuple(d[key])
        if d.get("action", "reply") not in ACTIONS:
            raise ValueError(f"fault action must be one of {ACTIONS}")
        return cls(**d)


@dataclass(frozen=True)
class ServerScript:
    """How the scripted server departs from the plain core (all optional)."""

    greeting: tuple[str, ...] = ()
    greeting_delay: float = 0.0
    greeting_close: bool = False
    split_all: int = 0  # cut every reply into segments of this many octets
    # true: every reply line in two segments (mid-line, then the rest); "first": only the first
    # line of each reply in two, then the rest of the reply in one more segment (fewer pauses)
    split_lines: bool | str = False
    split_delay: float = 0.05
    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ServerScript":
        d = dict(d)
        faults = tuple(Fault.from_dict(f) for f in d.pop("faults", ()))
        if isinstance(d.get("greeting"), str):
            d["greeting"] = (d["greeting"],)
        if "greeting" in d:
            d["greeting"] = tuple(d["greeting"])
        d.pop("none", None)  # no server at all (handled by the grader)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown server field(s): {', '.join(sorted(unknown))}")
        return cls(**d, faults=faults)


# -- actions for the shell ---------------------------------------------------------------------
@dataclass(frozen=True)
class Write:
    data: bytes
    unit_end: bool = False  # the last segment of a reply


@dataclass(frozen=True)
class Sleep:
    seconds: float
    #: the pause lasts ``seconds`` of the client program's own time (scripted.py): a greeting
    #: delay and the pauses between the segments of a cut reply, so on a loaded machine a client
    #: starved of CPU still meets the pause as the scenario meant it (a client that never waits
    #: still sends before the slow greeting; segments stay apart)
    client_time: bool = False


@dataclass(frozen=True)
class Record:
    event: Event


@dataclass(frozen=True)
class Hangup:
    reason: "str | Reason"  # knowledge.because(KEY): worded in the report's language


@dataclass(frozen=True)
class Wait:
    """Slow core work (a Pending): the shell runs it in a thread, then asks the layer to resume."""

    pending: Pending
    fault: Fault | None
    trigger: Event | None
    held: tuple = ()  # the reply's outputs before the slow work, kept until the fault applies


def _code_of(line: str, protocol: str) -> str:
    """The ``code`` a scripted reply line is recorded with, read as the protocol's observer reads
    a server line (IMAP: the status word or "+"; SMTP: the three digits; POP3: "+OK"/"-ERR")."""
    raw = line.encode("utf-8") + b"\r\n"
    if protocol == "imap":
        from mailtrace.protocols.imap.spec import read_reply

        return read_reply(raw).reply.status
    if protocol == "smtp":
        from mailtrace.protocols.smtp.syntax import parse_reply_line

        parsed = parse_reply_line(raw)
        if parsed is not None:
            return parsed[0]
    return line.split(" ", 1)[0]  # POP3's status word as written ("+OK" / "-ERR"), or a bad line's first word


@dataclass
class FaultLayer:
    """Wraps one core for one connection; see the module docstring."""

    core: Any
    script: ServerScript
    protocol: str
    counts: dict[int, int] = field(default_factory=dict)
    silenced: bool = False
    closed: bool = False
    _after_literal: bool = False  # the last client event was an IMAP literal
    _deferred: Fault | None = None  # a fault waiting for the end of a command that has literals

    @property
    def idle_timeout_seconds(self) -> float:
        return getattr(self.core, "idle_timeout_seconds", 0) or 0

    def start(self) -> list:
        outputs = self.core.start()
        s = self.script
        actions: list = []
        if s.greeting_delay:
            actions.append(Sleep(s.greeting_delay, client_time=True))
        if s.greeting:
            events = [o for o in outputs if isinstance(o, Event) and o.side is not Side.SERVER]
            actions += [Record(e) for e in events]
            actions += self._reply_lines(list(s.greeting), verb="")
            actions += self._segments(b"".join(_crlf(x) for x in s.greeting), self._split(), s.split_delay)
            if s.greeting_close:
                actions.append(Hangup(because("scripted-closed-after-greeting")))
                self.closed = True
            return actions
        actions += self._apply(outputs, None, None)  # (a greeting after slow work: held, as a reply)
        if s.greeting_close:
            actions.append(Hangup(because("scripted-closed-after-greeting")))
            self.closed = True
        return actions

    def receive(self, data: bytes) -> list:
        return self._group(self.core.receive(data))

    def eof(self) -> list:
        return self._group(self.core.eof())

    def idle_timeout(self) -> list:
        return self._group(self.core.idle_timeout())

    def notify(self) -> list:
        return self._group(self.core.notify())

    def resume(self, wait: Wait, result: Any) -> list:
        return self._group(list(wait.held) + wait.pending.resume(result), fault=wait.fault, trigger=wait.trigger)

    # -- internals ---------------------------------------------------------------------------
    def _match(self, event: Event) -> Fault | None:
        key = "." if event.kind is Kind.DATA else event.verb.upper()
        line = event.text(show_secrets=True)
        for i, fault in enumerate(self.script.faults):
            if fault.on not in ("*", key):
                continue
            if fault.match and fault.match.lower() not in line.lower():
                continue
            self.counts[i] = self.counts.get(i, 0) + 1
            if fault.nth and self.counts[i] != fault.nth:
                continue
            return fault
        return None

    def _group(self, outputs: list, fault: Fault | None = None, trigger: Event | None = None) -> list:
        """Split outputs at each client event; apply that event's fault to its reply."""
        outputs = _attribute_sends(outputs)
        actions: list = []
        group: list = []
        current: Event | None = trigger
        for out in outputs:
            if isinstance(out, Event) and out.side is Side.CLIENT and out.kind in CLIENT_KINDS:
                actions += self._apply(group, fault, current)
                group, current = [], out
                actions.append(Record(out))
                # IMAP commands with literals come as several client events: the line up to {n},
                # the literal, the rest of the line.  The fault belongs to the command's final reply.
                continued = out.kind is Kind.LITERAL or (out.kind is Kind.COMMAND and self._after_literal)
                opens = out.kind is Kind.COMMAND and literal_announced(out.raw) is not None
                if not continued:
                    matched = self._match(out)
                    self._deferred = matched if opens else None
                    fault = None if opens else matched
                elif out.kind is Kind.LITERAL or opens:
                    fault = None
                else:
                    fault, self._deferred = self._deferred, None
                self._after_literal = out.kind is Kind.LITERAL
            else:
                group.append(out)
        actions += self._apply(group, fault, current)
        return actions

    def _apply(self, group: list, fault: Fault | None, trigger: Event | None) -> list:
        if not group and fault is None:
            return []
        if self.silenced or self.closed:
            return [Record(o) for o in group if isinstance(o, Event) and o.side is not Side.SERVER]
        for i, out in enumerate(group):
            if isinstance(out, Pending):
                # The reply is finished after slow work (an IMAP FETCH sends its data, then marks
                # \Seen in a store job): hold what came before, so that the fault applies to the
                # whole reply and the reply's segments are the script's, not a thread's timing.
                return [Wait(out, fault, trigger, held=tuple(group[:i]))]
        if fault is None:
            return self._plain(group)
        actions: list = []
        if fault.action == "silence":
            self.silenced = True
            return [Record(o) for o in group if isinstance(o, Event) and o.side is not Side.SERVER]
        if fault.action == "close":
            self.closed = True
            return [Hangup(because("scripted-closed-instead"))]
        # A slow server's delay is wall-clock time: it comes before every reply of a scenario,
        # and stretching each one on a loaded machine ran whole dialogues past their limit.
        if fault.delay:
            actions.append(Sleep(fault.delay))
        tag = trigger.tag if trigger is not None else ""
        verb = trigger.verb if trigger is not None else ""
        lines = [x.replace("{tag}", tag) for x in fault.before]
        wire = b"".join(_crlf(x) for x in lines)
        actions += self._reply_lines(lines, verb=verb, unsolicited=True)
        if fault.core_input:
            self.core.receive(fault.core_input.encode("utf-8") + b"\r\n")  # keep the core in step
        if fault.reply:
            reply = [x.replace("{tag}", tag) for x in fault.reply]
            actions += self._reply_lines(reply, verb=verb)
            actions += [Record(o) for o in group if isinstance(o, Event) and o.side is not Side.SERVER]
            wire += b"".join(_crlf(x) for x in reply)
            close = any(isinstance(o, Close) for o in group)
        else:
            actions += [Record(o) for o in group if isinstance(o, Event)]
            wire += b"".join(o.data for o in group if isinstance(o, Send))
            close = any(isinstance(o, Close) for o in group)
        split = fault.split or self._split()
        split_delay = fault.split_delay if fault.split else self.script.split_delay
        if fault.coalesce:
            actions.append(Write(wire, unit_end=True))
        else:
            actions += self._segments(wire, split, split_delay)
        if close:
            actions.append(Hangup(next((o.reason for o in group if isinstance(o, Close)), "")))
        if fault.action == "close-after":
            self.closed = True
            actions.append(Hangup(because("scripted-closed-after-reply")))
        return actions

    def _plain(self, group: list) -> list:
        """One reply the script leaves alone: its octets go out as one write (or as the
        script's segments), however many ``Send``s the core made of it.  A core may end a reply
        in pieces (an IMAP STORE's untagged FETCH, then, after a job that looked at the mailbox,
        the tagged OK): written one by one, whether a client's recv() got them together would
        depend on thread timing, and one seed must give one grade."""
        actions: list = []
        wire = b""
        for out in group:
            if isinstance(out, Event):
                actions.append(Record(out))
            elif isinstance(out, Send):
                wire += out.data
            elif isinstance(out, Close):
                actions += self._segments(wire, self._split(), self.script.split_delay)
                wire = b""
                actions.append(Hangup(out.reason))
        return actions + self._segments(wire, self._split(), self.script.split_delay)

    def _reply_lines(self, lines: list[str], verb: str, unsolicited: bool = False) -> list:
        """Transcript events for scripted lines, as the core would record them (``unsolicited``:
        lines put before a reply, which answer no command)."""
        out = []
        for line in lines:
            ev_tag = ""
            if self.protocol == "imap":
                ev_tag = line.split(" ", 1)[0]
            out.append(Record(Event(side=Side.SERVER, kind=Kind.REPLY, raw=_crlf(line),
                                    code=_code_of(line, self.protocol), verb=verb, tag=ev_tag,
                                    scripted=True, unsolicited=unsolicited)))
        return out

    def _split(self) -> int:
        if self.script.split_lines == "first":
            return -3
        return -1 if self.script.split_lines else self.script.split_all

    @staticmethod
    def _segments(wire: bytes, split: int, delay: float) -> list:
        """Writes (and pauses): split > 0 octets per segment; -1 each line in two; -3 the first
        line in two, then the rest of the reply; 0 all at once.  A reply the script cuts also
        pauses before its first segment: written right after the last segment of the reply
        before it (a command that came mid-reply is answered as soon as that reply is out), the
        two would reach the client's recv() together or apart by chance."""
        if not wire:
            return []
        if split:
            return [Sleep(delay, client_time=True)] + FaultLayer._cut(wire, split, delay)
        return [Write(wire, unit_end=True)]

    @staticmethod
    def _cut(wire: bytes, split: int, delay: float) -> list:
        if split == -3:
            first, newline, rest = wire.partition(b"\n")
            first += newline
            half = max(1, (len(first) - 2) // 2)
            pieces = [p for p in (first[:half], first[half:], rest) if p]
        elif split == -1:
            pieces = []
            for line in wire.splitlines(keepends=True):
                half = max(1, (len(line) - 2) // 2)
                pieces += [line[:half], line[half:]] if len(line) > 3 else [line]
        elif split <= 0 or len(wire) <= split:
            return [Write(wire, unit_end=True)]
        else:
            pieces = [wire[i:i + split] for i in range(0, len(wire), split)]
        actions: list = []
        for i, piece in enumerate(pieces):
            if i:
                actions.append(Sleep(delay, client_time=True))
            actions.append(Write(piece, unit_end=i == len(pieces) - 1))
        return actions


def _attribute_sends(outputs: list) -> list:
    """Give each client event's reply its own ``Send``.

    A core may buffer the replies to several commands that came in one segment (pipelined, or
    sent without waiting) and write them in one ``Send`` after the last one (the SMTP core does).
    Grouped per client event, those octets would all land in the last command's group, and a
    fault on that command would replace the replies owed to the earlier ones.  So a ``Send``
    whose octets begin with the raw lines of the server events recorded since the previous
    ``Send`` is cut at the client events between them: each group gets the octets of its own
    reply lines, and what no event covers stays where the ``Send`` was (the last group).
    """
    out: list = []
    since: list[tuple[int, Event]] = []  # (position in out, server event) since the last Send
    for item in outputs:
        if not isinstance(item, Send):
            if isinstance(item, Event) and item.side is Side.SERVER:
                since.append((len(out), item))
            out.append(item)
            continue
        data, pos, start = item.data, 0, 0
        cuts: list[tuple[int, int, int]] = []  # (insert after this index, start, end)
        for i, (idx, event) in enumerate(since):
            if not event.raw or not data.startswith(event.raw, pos):
                break
            pos += len(event.raw)
            upto = since[i + 1][0] if i + 1 < len(since) else len(out)
            if any(_is_client(o) for o in out[idx + 1:upto]):  # the next event is another reply
                cuts.append((idx, start, pos))
                start = pos
        since = []
        for idx, a, b in reversed(cuts):
            out.insert(idx + 1, Send(data[a:b]))
        if data[start:]:
            out.append(Send(data[start:]))
    return out


def _is_client(item: Any) -> bool:
    return isinstance(item, Event) and item.side is Side.CLIENT and item.kind in CLIENT_KINDS


def _crlf(line: str) -> bytes:
    return line.encode("utf-8") + b"\r\n"


def mark(event: Event, **facts: str) -> Event:
    """A copy of ``event`` with how and when it arrived (``arrived=``)."""
    return replace(event, **facts)
