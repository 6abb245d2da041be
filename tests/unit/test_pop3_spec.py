"""The POP3 core follows pop3/spec.py: every (state, command) pair either moves as TRANSITIONS
says or gets the one wrong-state -ERR, and every store call it makes is a ``Pending`` job."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.protocols.base import Close, Pending, settle
from mailtrace.protocols.pop3 import spec
from mailtrace.protocols.pop3 import Pop3Config, Pop3ServerConnection, State, apop_digest
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Event, Kind
from test_pop3_fakes import FakeStore

STAMP = "<7.7@lab.test>"
#: For each command: lines the server runs (one that succeeds, and one that fails when it can).
EXAMPLES = {
    "USER": ["USER alice"],
    "PASS": ["PASS secret", "PASS wrong"],
    "APOP": [f"APOP alice {apop_digest(STAMP, 'secret')}", f"APOP alice {'0' * 32}"],
    "QUIT": ["QUIT"],
    "CAPA": ["CAPA"],
    "STLS": ["STLS"],
    "UTF8": ["UTF8"],
    "STAT": ["STAT"],
    "LIST": ["LIST", "LIST 1", "LIST 9"],
    "RETR": ["RETR 1", "RETR 9"],
    "DELE": ["DELE 1", "DELE 9"],
    "NOOP": ["NOOP"],
    "RSET": ["RSET"],
    "TOP": ["TOP 1 0", "TOP 9 0"],
    "UIDL": ["UIDL", "UIDL 2"],
}
#: How a new session reaches each state a client can speak in (UPDATE only answers QUIT and closes).
PATHS = {State.AUTHORIZATION: ["USER alice"], State.TRANSACTION: ["USER alice", "PASS secret"]}


class BrokenExpunge(FakeStore):
    """A store whose unlinks at QUIT fail (RFC 1939 §6: "-ERR some deleted messages not removed")."""

    def mailbox(self, user, name):
        box = super().mailbox(user, name)
        box.expunge = lambda uids: (_ for _ in ()).throw(OSError("disk gone"))
        return box


def session(store: FakeStore | None = None) -> Pop3ServerConnection:
    store = store or FakeStore()
    store.deliver("alice", b"Subject: one\r\n\r\nhello\r\n")
    store.deliver("alice", b"Subject: two\r\n\r\nworld\r\n")
    core = Pop3ServerConnection(store, STAMP, Pop3Config(tls_available=True, max_bad_commands=1000))
    settle(core.start())
    return core


def test_every_command_has_examples():
    assert set(EXAMPLES) == set(spec.COMMANDS)


@pytest.mark.parametrize("state", list(PATHS), ids=lambda s: s.value)
@pytest.mark.parametrize("line", [line for lines in EXAMPLES.values() for line in lines])
def test_each_state_and_command_follows_the_table_or_gets_the_wrong_state_error(state, line):
    core = session()
    for step in PATHS[state]:
        settle(core.receive(step.encode() + b"\r\n"))
    assert core.state is state
    verb = line.split(" ")[0]
    command_spec = spec.COMMANDS[verb]
    out = settle(core.receive(line.encode() + b"\r\n"))
    command, reply = [o for o in out if isinstance(o, Event) and o.kind in (Kind.COMMAND, Kind.REPLY)][:2]
    assert (command.verb, reply.verb) == (verb, verb)
    if state not in command_spec.states:  # RFC 1939 §3: a negative status, nothing changes
        note, text = spec.wrong_state(verb, command_spec, state)
        assert command.notes == ((note,) if command.redacted is None else (spec.Note(note.rule),))  # (a secret's notes keep no detail)
        assert reply.raw == spec.wire(spec.Reply(spec.ERR, text))
        assert core.state is state and not core.closed
        return
    result = spec.outcome(spec.read_status(reply.raw)[0])
    assert core.state is spec.after_reply(state, verb, result, True)
    assert reply.state == core.state.value
    assert any(isinstance(o, Close) for o in out) is spec.closes(verb, result, True)


def test_quit_whose_removal_fails_enters_update_and_closes():
    core = session(BrokenExpunge())
    for step in PATHS[State.TRANSACTION] + ["DELE 1"]:
        settle(core.receive(step.encode() + b"\r\n"))
    out = settle(core.receive(b"QUIT\r\n"))
    (reply,) = [o for o in out if isinstance(o, Event) and o.kind is Kind.REPLY]
    assert reply.code == spec.ERR and reply.response_code == "SYS/TEMP"
    assert core.state is State.UPDATE is spec.after_reply(State.TRANSACTION, "QUIT", spec.outcome(spec.Reply(spec.ERR)), True)
    assert isinstance(out[-1], Close)


def test_refused_commands_never_move_the_state():
    """A -ERR to QUIT the server did not run (an argument) leaves TRANSACTION; only a QUIT it ran does not."""
    core = session()
    for step in PATHS[State.TRANSACTION]:
        settle(core.receive(step.encode() + b"\r\n"))
    out = settle(core.receive(b"QUIT now\r\n"))
    assert core.state is State.TRANSACTION and not any(isinstance(o, Close) for o in out)


# --- No store call outside a Pending job -------------------------------------------------------
class Guard:
    """Wraps the store (and the mailboxes and locks it hands out): calling any of their methods
    while no ``Pending`` job runs fails the test, but for ``ON_LOOP``'s."""

    ON_LOOP = {"cached"}  # Mailbox.cached: a message in memory, no file touched

    def __init__(self) -> None:
        self.in_job = False
        self.calls: list[str] = []

    def wrap(self, target):
        guard = self

        class Guarded:
            def __getattr__(self, name):
                attr = getattr(target, name)
                if not callable(attr):
                    return attr

                def call(*args, **kwargs):
                    assert guard.in_job or name in guard.ON_LOOP, f"store call {name}() on the event loop"
                    guard.calls.append(name)
                    result = attr(*args, **kwargs)
                    return guard.wrap(result) if hasattr(result, "release") or hasattr(result, "expunge") else result

                return call

        return Guarded()

    def run(self, outputs) -> list:
        out, queue = [], list(outputs)
        while queue:
            item = queue.pop(0)
            if isinstance(item, Pending):
                self.in_job = True
                try:
                    result = item.job()
                finally:
                    self.in_job = False
                queue[0:0] = item.resume(result)
            else:
                out.append(item)
        return out


WORDS = ["USER alice", "USER Alice", "PASS alice", "PASS wrong", f"APOP alice {apop_digest(STAMP, 'alice')}",
         "STAT", "LIST", "UIDL", "RETR 1", "RETR 2", "TOP 1 1", "DELE 1", "RSET", "NOOP", "CAPA", "BOGUS", "QUIT"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=12), st.sampled_from(["eof", "idle", "none"]))
def test_every_store_call_runs_in_a_pending_job(script, ending):
    with tempfile.TemporaryDirectory() as d:
        real = MaildirStore(Path(d), {"alice": "alice"}, fsync=False)
        try:
            real.deliver("alice", b"Subject: one\r\n\r\nhello\r\n")
            real.deliver("alice", b"Subject: two\r\n\r\nworld\r\n")
            guard = Guard()
            core = Pop3ServerConnection(guard.wrap(real), STAMP, Pop3Config(max_bad_commands=1000))
            outputs = guard.run(core.start())
            for line in script:
                outputs += guard.run(core.receive(line.encode() + b"\r\n"))
            outputs += guard.run(core.eof() if ending == "eof" else core.idle_timeout() if ending == "idle" else [])
            if ending != "none" or core.closed:
                assert real.lock_maildrop("alice") is not None, "the maildrop lock was released"
            if any(isinstance(o, Event) and o.verb in ("PASS", "APOP") and o.code == "+OK" for o in outputs):
                assert {"lock_maildrop", "mailbox"} <= set(guard.calls)
        finally:
            real.close()


def test_a_message_the_store_holds_in_memory_is_sent_without_a_store_job():
    """The first session's RETR reads the message in a job (and the store keeps it in memory);
    the next session's RETR of it needs none, and sends the same bytes."""
    with tempfile.TemporaryDirectory() as d:
        real = MaildirStore(Path(d), {"alice": "alice"}, fsync=False)
        try:
            real.deliver("alice", b"Subject: one\r\n\r\n.hello\r\n")
            bodies, jobs = [], []
            for _ in range(2):
                core = Pop3ServerConnection(real, STAMP)
                settle(core.start())
                settle(core.receive(b"USER alice\r\nPASS alice\r\n"))
                out = core.receive(b"RETR 1\r\n")
                jobs.append(any(isinstance(o, Pending) for o in out))
                bodies += [o.raw for o in settle(out) if isinstance(o, Event) and o.kind is Kind.DATA]
                settle(core.receive(b"QUIT\r\n"))
            assert jobs == [True, False]
            assert bodies == [b"Subject: one\r\n\r\n..hello\r\n.\r\n"] * 2
        finally:
            real.close()


def test_retr_reads_ahead_in_one_store_job_and_serves_each_message_once():
    """One job reads the message asked for and the next ones (maildrop.READ_AHEAD_MESSAGES):
    the RETRs that follow need no store call; a deleted message is skipped, a later TOP of a
    message already sent reads it again."""
    from mailtrace.protocols.pop3.maildrop import READ_AHEAD_MESSAGES

    store = FakeStore()
    bodies = [f"Subject: {n}\r\n\r\nbody {n}\r\n".encode() for n in range(1, READ_AHEAD_MESSAGES + 3)]
    for body in bodies:
        store.deliver("alice", body)
    core = Pop3ServerConnection(store, STAMP)
    settle(core.start())
    settle(core.receive(b"USER alice\r\nPASS secret\r\nDELE 2\r\n"))
    jobs = []
    for n in [1, 3, 4, READ_AHEAD_MESSAGES + 1, READ_AHEAD_MESSAGES + 2, 1]:
        verb = b"TOP 1 0" if n == 1 and jobs else f"RETR {n}".encode()
        out = core.receive(verb + b"\r\n")
        jobs.append(any(isinstance(o, Pending) for o in out))
        body = [o for o in settle(out) if isinstance(o, Event) and o.kind is Kind.DATA][0]
        assert body.raw.startswith(bodies[n - 1].split(b"\r\n")[0])
    # RETR 1 reads 1 and 3..17 (2 is deleted): RETR 3, 4, 17 come from memory; 18 and TOP 1 need jobs
    assert jobs == [True, False, False, False, True, True]


def test_message_numbers_are_typed_arguments_of_the_command_events():
    """Event.args: RETR's and TOP's message number and TOP's line count, from read_command (so
    the core and the observer, which both call it, agree); nothing for a malformed number."""
    core = session()
    lines = ["USER alice", "PASS secret", "RETR 2", "TOP 1 3", "DELE x", "LIST", "QUIT"]
    commands = []
    for line in lines:
        out = settle(core.receive(line.encode() + b"\r\n"))
        commands += [(o.verb, o.args) for o in out if isinstance(o, Event) and o.kind is Kind.COMMAND]
    assert commands == [("USER", None), ("PASS", None), ("RETR", spec.Args(message=2)),
                        ("TOP", spec.Args(message=1, lines=3)), ("DELE", None), ("LIST", None), ("QUIT", None)]


def test_read_status_says_what_is_wrong_with_a_status_line():
    """The observer's checks of a server's status line live in spec.read_status (RFC 1939 §3)."""
    reply, notes = spec.read_status(b"+OK " + b"x" * 600 + b"\n")
    assert reply.status == spec.OK and [n.rule for n in notes] == ["bare-lf", "response-too-long"]
    assert spec.read_status(b"-ERR [IN-USE] locked\r\n") == (spec.Reply(spec.ERR, "[IN-USE] locked", code="IN-USE"), ())
    assert spec.read_status(b"+ \r\n")[0].status == spec.CONTINUATION  # a SASL challenge (RFC 5034 §4)
    reply, notes = spec.read_status(b"+ \r\n", continuation=False)  # "+" when no AUTH awaits an answer
    assert reply.status == "" and [n.rule for n in notes] == ["bad-status"]
    assert [n.rule for n in spec.read_status(b"+ok fine\r\n")[1]] == ["bad-status"]


def test_user_pass_and_marked_messages_are_counted_by_one_rule():
    assert spec.user_pass("PASS", False) == (False, (spec.Note("pass-without-user"),))
    assert spec.user_pass("USER", False) == (True, ())
    assert spec.user_pass("STAT", True) == (True, ())  # other commands may come between (as Dovecot)
    assert spec.user_pass("APOP", True) == (False, ())
    marked = 0
    for verb, result in [("DELE", spec.Outcome.OK), ("DELE", spec.Outcome.FAIL), ("DELE", spec.Outcome.OK),
                         ("RSET", spec.Outcome.OK), ("DELE", spec.Outcome.OK)]:
        marked = spec.marked_after(verb, result, marked)
    assert marked == 1


# --- Redaction: the quick look at a line says what the full reading says ------------------------
def _full_reading(state: list, line: bytes, known: bool) -> bytes | None:
    """Redaction.of without its quick look (the oracle)."""
    from mailtrace.protocols import credentials

    after_auth, state[0] = state[0], credentials.starts_sasl(line) or (state[0] and not known)
    masked = credentials.pop3(line)
    if masked is None and after_auth and not known:
        masked = credentials.masked_line(line)
    return masked


line_words = st.sampled_from([b"PASS", b"pass", b"PaSs", b"USER", b"user", b"APOP", b"AUTH", b"auth", b"x", b"UID",
                              b"AUTHENTICATE", b"RETR", b"1", b"secret", b"alice", b"PLAIN", b"dXNlcg==", b"*"])
lines = st.tuples(st.sampled_from([b"", b" ", b"\t"]), st.lists(line_words, max_size=4),
                  st.sampled_from([b" ", b"\t", b"  "]), st.sampled_from([b"\r\n", b"\n", b""])).map(
    lambda t: t[0] + t[2].join(t[1]) + t[3])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(lines, st.booleans()), max_size=8))
def test_redaction_quick_look_masks_exactly_what_the_full_reading_masks(script):
    redaction, state = spec.Redaction(), [False]
    for line, known in script:
        assert redaction.of(line, known) == _full_reading(state, line, known)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from([b".", b"..", b"text", b" ", b".x"]), max_size=3).map(b"".join),
                min_size=1, max_size=8))
def test_retr_and_top_stuff_every_dot_line_in_every_session(body_lines):
    """The stuffing decision is remembered per stored message (maildrop.message_facts):
    RETR and TOP still double every leading "." (RFC 1939 §3), in a first session and the next."""
    message = b"Subject: dots\r\n\r\n" + b"".join(line + b"\r\n" for line in body_lines)
    with tempfile.TemporaryDirectory() as d:
        real = MaildirStore(Path(d), {"alice": "alice"}, fsync=False)
        try:
            real.deliver("alice", message)
            for _ in range(2):
                core = Pop3ServerConnection(real, STAMP)
                settle(core.start())
                settle(core.receive(b"USER alice\r\nPASS alice\r\n"))
                for command, want in ((b"TOP 1 1", spec.top_of(message, 1)), (b"RETR 1", message)):
                    out = settle(core.receive(command + b"\r\n"))
                    (body,) = [o.raw for o in out if isinstance(o, Event) and o.kind is Kind.DATA]
                    assert body == spec.byte_stuff(want)
                settle(core.receive(b"QUIT\r\n"))
        finally:
            real.close()


def test_a_message_with_utf8_header_fields_is_refused_without_utf8_in_every_session():
    """RFC 6856 §2.1, with the fact remembered per stored message (maildrop.message_facts)."""
    message = "Subject: canción\r\n\r\nhola\r\n".encode()
    with tempfile.TemporaryDirectory() as d:
        real = MaildirStore(Path(d), {"alice": "alice"}, fsync=False)
        try:
            real.deliver("alice", message)
            answers = []
            for utf8 in (False, True, False):
                core = Pop3ServerConnection(real, STAMP)
                settle(core.start())
                settle(core.receive((b"UTF8\r\n" if utf8 else b"") + b"USER alice\r\nPASS alice\r\n"))
                out = settle(core.receive(b"RETR 1\r\n"))
                answers.append([o.raw for o in out if isinstance(o, Event) and o.kind in (Kind.REPLY, Kind.DATA)])
                settle(core.receive(b"QUIT\r\n"))
            assert answers[0] == answers[2] and answers[0][0].startswith(b"-ERR [UTF8]") and len(answers[0]) == 1
            assert answers[1] == [b"+OK %d octets\r\n" % len(message), message + b".\r\n"]
        finally:
            real.close()


def test_two_stores_with_the_same_unique_names_do_not_share_what_is_remembered():
    """The grader runs many scenarios at once in one process, each with its own store, and one
    seed gives their users and messages the same names: what is remembered of a message
    (maildrop.message_facts) belongs to its folder, or a message with dot lines went out
    unstuffed after a same-named one without them (the client hung on a short RETR)."""
    import shutil

    with tempfile.TemporaryDirectory() as d:
        dotted, plain = b"Subject: x\r\n\r\n..x\r\n", b"Subject: x\r\n\r\nabx\r\n"  # same length
        first = MaildirStore(Path(d, "a"), {"alice": "alice"}, fsync=False)
        first.deliver("alice", dotted)
        first.close()
        shutil.copytree(Path(d, "a"), Path(d, "b"))  # the same folders, uidlist and unique names
        (copy,) = [p for p in Path(d, "b").rglob("*") if p.is_file() and p.read_bytes() == dotted.replace(b"\r\n", b"\n")]
        copy.write_bytes(plain.replace(b"\r\n", b"\n"))
        for root, message in (("b", plain), ("a", dotted)):
            store = MaildirStore(Path(d, root), {"alice": "alice"}, fsync=False)
            try:
                core = Pop3ServerConnection(store, STAMP)
                settle(core.start())
                settle(core.receive(b"USER alice\r\nPASS alice\r\n"))
                out = settle(core.receive(b"RETR 1\r\n"))
                (body,) = [o.raw for o in out if isinstance(o, Event) and o.kind is Kind.DATA]
                assert body == spec.byte_stuff(message), root
                settle(core.receive(b"QUIT\r\n"))
            finally:
                store.close()
