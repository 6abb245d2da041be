"""The SMTP core keeps to its spec: every (state, verb) pair either follows spec.TRANSITIONS or
is refused with 503 and leaves the state alone (RFC 5321 §4.1.4, §4.2.4), on the real core."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailtrace.protocols.base import Pending, StartTLS
from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection, State
from mailtrace.protocols.smtp.spec import COMMANDS, END_OF_DATA, TRANSITIONS, outcome
from mailtrace.protocols.spec import Outcome
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Event, Kind

PLAIN = base64.b64encode(b"\0alice\0alice").decode()
#: One well-formed line per verb: allowed in its state, each gets a positive reply (EXPN: 502 by policy).
SAMPLES = {"HELO": "HELO pc1.example", "EHLO": "EHLO pc1.example", "MAIL": "MAIL FROM:<a@b.example>",
           "RCPT": "RCPT TO:<bob@lab.test>", "DATA": "DATA", "RSET": "RSET", "NOOP": "NOOP", "QUIT": "QUIT",
           "HELP": "HELP", "VRFY": "VRFY bob", "EXPN": "EXPN staff", "STARTTLS": "STARTTLS",
           "AUTH": f"AUTH PLAIN {PLAIN}"}
#: Client lines that bring a new session to each state where the server reads commands.
PATHS = {
    State.GREETED: [],
    State.READY: ["EHLO pc1.example"],
    State.MAIL: ["EHLO pc1.example", "MAIL FROM:<a@b.example>"],
    State.RCPT: ["EHLO pc1.example", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@lab.test>"],
    State.DONE: ["EHLO pc1.example", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@lab.test>", "DATA", "Hi.", "."],
}


class Session:
    """A real core on a real Maildir store; store jobs run at once, STARTTLS 'succeeds'."""

    def __init__(self, store: MaildirStore, config: SmtpConfig | None = None) -> None:
        self.core = SmtpServerConnection(config or SmtpConfig(tls_available=True, max_bad_commands=1000), store,
                                         clock=time.time, client_address="127.0.0.1:40000")
        self.events: list[Event] = []
        self.run(self.core.start())

    def run(self, outputs) -> None:
        for out in outputs:
            if isinstance(out, Pending):
                self.run(out.resume(out.job()))
            elif isinstance(out, StartTLS):
                self.run(self.core.tls_started())
            elif isinstance(out, Event):
                self.events.append(out)

    def codes(self) -> list[str]:
        """The codes of every complete reply so far."""
        return [e.code for e in self.events if e.kind is Kind.REPLY and e.raw[3:4] != b"-"]

    def say(self, line: str) -> list[str]:
        """Send one line; the codes of the complete replies it got."""
        before = len(self.events)
        self.run(self.core.receive(line.encode() + b"\r\n"))
        return [e.code for e in self.events[before:] if e.kind is Kind.REPLY and e.raw[3:4] != b"-"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = MaildirStore(tmp_path_factory.mktemp("mail"), {"alice": "alice", "bob": "bob"}, fsync=False)
    yield s
    s.close()


@pytest.mark.parametrize("verb", list(COMMANDS))
@pytest.mark.parametrize("state", list(PATHS), ids=lambda s: s.value)
def test_every_state_and_verb_follows_the_table_or_gets_503(store, state, verb):
    session = Session(store)
    for line in PATHS[state]:
        session.say(line)
    assert session.core.state is state
    codes = session.say(SAMPLES[verb])
    assert len(codes) == 1, codes
    after = session.core.state
    if state in COMMANDS[verb].states:
        assert after is TRANSITIONS.next_state(state, verb, outcome(codes[0]))
        expected = {Outcome.FAIL} if verb == "EXPN" else {Outcome.OK, Outcome.MORE, Outcome.BYE}
        assert outcome(codes[0]) in expected, f"{verb} in {state.value}: {codes[0]}"
    else:  # §4.1.4 order broken: "503 Bad sequence of commands" (§4.2.4), nothing changes
        assert codes == ["503"] and after is state


# Words a client may send anywhere: every command, a bad one, message lines, SASL responses.
WORDS = list(SAMPLES.values()) + ["AUTH LOGIN", "RCPT TO:<nobody@lab.test>", "RCPT TO:<x@else.example>",
                                  "MAIL FROM:bad", "BOGUS", "TURN", "Hi.", ".", "*", base64.b64encode(b"alice").decode()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(WORDS), max_size=30))
def test_every_line_moves_the_state_only_as_the_table_says(store, words):
    """Whatever the order, each reply moves the core exactly as TRANSITIONS says for the state
    it was in, the verb (or "." / the AUTH response it answers) and the reply's outcome."""
    session = Session(store)
    for word in words:
        before = session.core.state
        if before is State.CLOSED:
            break
        codes = session.say(word)
        after = session.core.state
        if before is State.DATA and word != ".":  # a line of the message: no reply yet
            assert codes == [] and after is State.DATA
            continue
        step = END_OF_DATA if before is State.DATA else "AUTH" if before is State.AUTH else word.split()[0].upper()
        assert len(codes) == 1, (before, word, codes)
        if before is not State.AUTH and step in COMMANDS and before not in COMMANDS[step].states:
            assert codes[0] in ("503", "554") and after is before  # 554: DATA after refused RCPTs (§4.1.1.4)
        else:
            assert after is TRANSITIONS.next_state(before, step, outcome(codes[0])), (before, word, codes)
