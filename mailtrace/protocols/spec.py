"""The shape every protocol's ``spec.py`` fills in (``smtp/spec.py``, ``pop3/spec.py``,
``imap/spec.py``).

Theory of operation (the h11 idea, applied to mail): a protocol is *written down once*, as
data, and every role reads that one description.

* ``State``: the states the RFC names (a ``str`` enum; the value is what ``Event.state`` holds).
* ``COMMANDS``: one :class:`CommandSpec` per verb: the states where it is allowed (any other
  state gets the protocol's "wrong state" reply: SMTP 503, POP3 ``-ERR``, IMAP ``BAD``), its
  argument grammar and the RFC section that defines it.
* ``TRANSITIONS``: a :class:`TransitionTable`: in state S, command V answered with a reply of
  :class:`Outcome` O moves the session to state T.  The server core changes state *only* by
  looking the reply it just sent up in this table; an observer (proxy, pcap import, the
  grader judging a student's server) looks up the reply it just *saw*.  So both always agree,
  and the course's state diagrams are drawn from the same rows.
* Limits: named constants with the RFC sentence they come from beside them.

Nothing in a spec does I/O, reads the clock or keeps mutable module-level state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping


class Outcome(str, enum.Enum):
    """What a reply means for the command it answers, in every protocol."""

    OK = "ok"  # SMTP 2xx, POP3 +OK, IMAP tagged OK: the command was done
    MORE = "more"  # SMTP 3xx (334, 354), POP3 and IMAP "+" continuation: go on
    FAIL = "fail"  # SMTP 4xx/5xx, POP3 -ERR, IMAP tagged NO: the command failed
    BAD = "bad"  # IMAP tagged BAD (RFC 3501 §7.1.3): "command unknown or arguments invalid", not run
    BYE = "bye"  # the server is closing: SMTP 221/421, IMAP untagged BYE


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's answer, typed; each protocol's spec makes its wire form in one function
    (``spec.wire(reply) -> bytes``) and classifies it (``spec.outcome(reply) -> Outcome``).

    ``Reply("250", "OK", code="2.1.0")``; ``Reply("-ERR", "no such message")``;
    ``Reply("OK", "SELECT completed", code="READ-WRITE", tag="a2")``.  Several lines (an SMTP
    multi-line reply, a POP3 multi-line body's status line) are a tuple of texts.
    """

    status: str  # "250", "+OK" / "-ERR", "OK" / "NO" / "BAD" / "BYE" / "+"
    text: str | tuple[str, ...] = ""
    code: str = ""  # SMTP enhanced status code (RFC 3463); POP3 / IMAP response code
    tag: str = ""  # IMAP: the command's tag, "*" for untagged, "+" for a continuation


#: In a transition row, "any command" (e.g. SMTP 421 closes whatever was asked).
ANY_VERB = "*"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of a protocol's command table."""

    states: frozenset  # where the command is allowed; elsewhere: the "wrong state" reply
    rfc: str = ""  # the section that defines it, e.g. "RFC 1939 §5"
    syntax: str = ""  # the argument grammar as the RFC writes it, shown to students
    handler: Callable[..., Any] | None = None  # the server core's handler, if it offers the verb
    extra: Mapping[str, Any] = field(default_factory=dict)  # protocol-specific facts (args, multiline...)


def command_row(states: Iterable, rfc: str, syntax: str, **facts: Any) -> CommandSpec:
    """One row of a ``COMMANDS`` table, written the same way in every protocol's spec: where the
    verb is allowed, the RFC section, the grammar, then the protocol's facts about it (the same
    key for the same fact: ``starts_tls``, ``closes``, ``multiline``...), kept read-only in
    ``CommandSpec.extra``."""
    return CommandSpec(frozenset(states), rfc=rfc, syntax=syntax, extra=MappingProxyType(facts))


@dataclass(frozen=True, slots=True)
class Transition:
    """In one of ``sources``, ``verb`` answered with ``outcome`` leads to ``target``."""

    sources: frozenset
    verb: str
    outcome: Outcome
    target: Any
    label: str = ""  # for diagrams: "MAIL FROM: 250"


class TransitionTable:
    """The transitions of one protocol, looked up by (state, verb, outcome).

    A (state, verb, outcome) with no row leaves the state unchanged: that is the common case
    (a 250 to NOOP, a -ERR to RETR).  A specific verb wins over ``ANY_VERB``.
    """

    def __init__(self, rows: Iterable[Transition]):
        self.rows: tuple[Transition, ...] = tuple(rows)
        self._index: dict[tuple[Any, str, Outcome], Transition] = {}
        for row in self.rows:
            for source in row.sources:
                key = (source, row.verb, row.outcome)
                if key in self._index and self._index[key].target != row.target:
                    raise ValueError(f"two transitions for {key}")
                self._index[key] = row

    def row(self, state: Any, verb: str, outcome: Outcome) -> Transition | None:
        """The row that decides where ``verb`` answered with ``outcome`` leads from ``state``
        (None: the state does not change); diagrams and tests name the rows they draw."""
        return self._index.get((state, verb, outcome)) or self._index.get((state, ANY_VERB, outcome))

    def next_state(self, state: Any, verb: str, outcome: Outcome) -> Any:
        """The state after ``verb`` was answered with ``outcome`` in ``state``."""
        found = self.row(state, verb, outcome)
        return state if found is None else found.target
