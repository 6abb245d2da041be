"""What one scenario run left behind: the single input of every check.

A check is a pure function of a :class:`Run`: the transcript (the same ``Event`` records every
other part of mailtrace produces), the program's exit status and output, the files it wrote,
the data it was given and what the scripted server's store holds afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailtrace.grading.exercise import Exercise, Scenario
from mailtrace.grading.sandbox import ProgramResult
from mailtrace.transcript.event import Event, Kind, Side


@dataclass
class Run:
    exercise: Exercise
    scenario: Scenario
    variables: dict[str, Any]
    program: ProgramResult
    events: list[Event] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # written by the program (path relative to cwd)
    inputs: dict[str, bytes] = field(default_factory=dict)  # input files given to it
    fixture: list[dict] = field(default_factory=list)  # POP3/IMAP: [{n, uid, data, mailbox}] before the run
    store_after: dict[str, Any] = field(default_factory=dict)  # {"messages": [{uid, flags, ...}], ...}
    notes: list[str] = field(default_factory=list)  # what collecting the outputs left out, and why
    lang: str = "en"
    #: the run's passwords, hidden in what the program printed (its stdout and stderr reach the
    #: feedback and every report format) unless --show-secrets: set by the grader's score_run
    hidden: tuple[str, ...] = ()
    _pairs: dict[int, list[Event]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def exercise_timeout(self) -> float:
        return self.scenario.timeout or self.exercise.timeout

    @property
    def server_options(self) -> dict[str, Any]:
        return self.scenario.server

    def client_events(self) -> list[Event]:
        return [e for e in self.events if e.side is Side.CLIENT and e.kind in (Kind.COMMAND, Kind.DATA, Kind.LITERAL)]

    def commands(self, verb: str | None = None) -> list[Event]:
        """Client commands, without the continuation lines of IMAP commands that carry literals
        (the rest of a command line after a literal is recorded as its own event)."""
        out = []
        prev: dict[str, Event] = {}
        for e in self.events:
            if e.side is not Side.CLIENT or e.kind not in (Kind.COMMAND, Kind.DATA, Kind.LITERAL):
                continue
            before = prev.get(e.session)
            prev[e.session] = e
            if e.kind is not Kind.COMMAND or (before is not None and before.kind is Kind.LITERAL):
                continue
            if verb is None or e.verb.upper() == verb:
                out.append(e)
        return out

    def sessions(self) -> list[str]:
        seen: list[str] = []
        for e in self.events:
            if e.session and e.session not in seen:
                seen.append(e.session)
        return seen

    def option(self, key: str, default: Any = None) -> Any:
        return self.scenario.options.get(key, default)

    @property
    def stderr(self) -> str:
        return self._shown(self.program.stderr.decode("utf-8", errors="replace"))

    @property
    def stdout(self) -> str:
        return self._shown(self.program.stdout.decode("utf-8", errors="replace"))

    def _shown(self, text: str) -> str:
        for secret in self.hidden:
            text = text.replace(secret, SECRET_MASK)
        return text


    def reply_to(self, event: Event) -> list[Event]:
        """The server reply to ``event`` (its lines).

        SMTP replies are paired with commands by order (RFC 2920 §3: "the server MUST send the
        replies in the order of the commands"), so a pipelined command, followed at once by the
        next one, still has its reply.  Elsewhere (and where the order cannot be trusted) it is
        the server events that came after ``event`` until the next client event.
        """
        if self.exercise.protocol == "smtp":
            if self._pairs is None:
                self._pairs = smtp_pairs(self.events)
            if id(event) in self._pairs:
                return self._pairs[id(event)]
        out = []
        started = False
        for e in self.events:
            if e is event:
                started = True
                continue
            if not started:
                continue
            if e.side is Side.CLIENT and e.kind in (Kind.COMMAND, Kind.DATA, Kind.LITERAL):
                break
            if e.side is Side.SERVER and e.kind is Kind.REPLY:
                out.append(e)
        return out


def smtp_pairs(events: list[Event]) -> dict[int, list[Event]]:
    """``id(client event) -> its reply lines`` for SMTP, by order within each session.

    The first reply of a session is the greeting; then each command (and each DATA body) has
    one reply, whose last line has a space after the code (RFC 5321 §4.2.1).  Pairing stops at
    the first reply whose verb is not the command's (something unforeseen: the caller falls back
    to reading what followed the command), and unsolicited scripted lines are skipped.
    """
    pairs: dict[int, list[Event]] = {}
    from mailtrace.protocols.smtp.syntax import continues

    by_session: dict[str, tuple[list[Event], list[list[Event]]]] = {}
    for e in events:
        cmds, units = by_session.setdefault(e.session, ([], [[]]))
        if e.side is Side.CLIENT and e.kind in (Kind.COMMAND, Kind.DATA):
            cmds.append(e)
        elif e.side is Side.SERVER and e.kind is Kind.REPLY and not e.unsolicited:
            units[-1].append(e)
            if not continues(e.raw):
                units.append([])
    for cmds, units in by_session.values():
        replies = [u for u in units if u][1:]  # without the greeting
        for cmd, unit in zip(cmds, replies):
            if unit[-1].verb.upper() != cmd.verb.upper():
                break
            pairs[id(cmd)] = unit
        else:
            for cmd in cmds[len(replies):]:
                pairs[id(cmd)] = []  # not answered (yet): a silent server, a closed connection
    return pairs


#: what a password the program printed is replaced with (as PASS in a transcript)
SECRET_MASK = "********"


def secrets_of(variables: dict[str, Any]) -> tuple[str, ...]:
    """The passwords among a run's variables (``password``, ``password_tricky``, a server
    exercise's ``other_password``, ``arg_password``...), longest first (one inside another)."""
    found = {v for k, v in variables.items() if "password" in k and isinstance(v, str) and len(v) >= 3}
    return tuple(sorted(found, key=len, reverse=True))
