"""Unit tests of the sans-I/O POP3 core (RFC 1939), fed whole and one byte at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.protocols.base import Close, Send, StartTLS, events_of, send_all, settle
from mailtrace.protocols.pop3 import COMMANDS, HANDLERS, Pop3Config, Pop3ServerConnection, State, apop_digest
from mailtrace.protocols.pop3.spec import MAX_COMMAND_LINE, byte_stuff, top_of
from mailtrace.transcript.event import Kind, Side
from conversation import Conversation
from test_pop3_fakes import FakeStore


def receive(core, data: bytes) -> list:
    """The core's outputs for ``data``, its store jobs (``Pending``) run at once as a shell would."""
    from mailtrace.protocols.base import settle

    return settle(core.receive(data))


STAMP = "<4242.1700000000@lab.test>"
MSG1 = b"From: a@lab.test\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\n..two dots\r\nend\r\n"
MSG2 = b"Subject: two\r\n\r\nline1\r\nline2\r\nline3\r\n"


def make(store=None, **config) -> tuple[Pop3ServerConnection, FakeStore]:
    store = store or FakeStore()
    store.mail.setdefault("alice", {})
    if not store.mail["alice"]:
        store.deliver("alice", MSG1)
        store.deliver("alice", MSG2)
    conn = Pop3ServerConnection(store, STAMP, Pop3Config(**config))
    return conn, store


def feed(conn, data: bytes, chunk: int) -> list:
    """The outputs for ``data`` fed ``chunk`` bytes at a time (tests/conversation.py)."""
    conv = Conversation(conn, start=False, chunk=chunk)
    conv.send(data)
    return conv.outputs


def talk(conn, *lines: str, chunk: int = 10_000) -> bytes:
    """What the core sends back to ``lines`` sent all at once (pipelined), ``chunk`` bytes at a time."""
    return Conversation(conn, start=False, chunk=chunk).send("".join(line + "\r\n" for line in lines).encode())


CHUNKS = [1, 2, 7, 10_000]


def test_tables_and_handlers_agree():
    assert set(COMMANDS) == set(HANDLERS)


def test_greeting_has_apop_timestamp():
    conn, _ = make()
    out = conn.start()
    assert send_all(out) == f"+OK mailtrace POP3 lab server ready {STAMP}\r\n".encode()
    (event,) = events_of(out)
    assert event.code == "+OK" and event.state == "AUTHORIZATION"


@pytest.mark.parametrize("chunk", CHUNKS)
def test_whole_session(chunk):
    conn, store = make()
    conn.start()
    script = ("USER alice", "PASS secret", "STAT", "LIST", "LIST 2", "UIDL", "UIDL 1", "RETR 1", "TOP 2 1",
              "DELE 1", "STAT", "RETR 1", "LIST", "RSET", "STAT", "DELE 2", "NOOP", "QUIT")
    data = "".join(s + "\r\n" for s in script).encode()
    out = feed(conn, data, chunk)
    sent = send_all(out).decode()
    size1, size2 = len(MSG1), len(MSG2)
    expected = (
        "+OK send PASS for alice\r\n"
        f"+OK alice's maildrop has 2 messages ({size1 + size2} octets)\r\n"
        f"+OK 2 {size1 + size2}\r\n"
        f"+OK 2 messages ({size1 + size2} octets)\r\n1 {size1}\r\n2 {size2}\r\n.\r\n"
        f"+OK 2 {size2}\r\n"
        "+OK unique-id listing follows\r\n1 00000001000004d2\r\n2 00000002000004d2\r\n.\r\n"
        "+OK 1 00000001000004d2\r\n"
        f"+OK {size1} octets\r\n" + byte_stuff(MSG1).decode() +
        "+OK top of message follows\r\nSubject: two\r\n\r\nline1\r\n.\r\n"
        "+OK message 1 deleted\r\n"
        f"+OK 1 {size2}\r\n"
        "-ERR message 1 already deleted\r\n"
        f"+OK 1 messages ({size2} octets)\r\n2 {size2}\r\n.\r\n"
        f"+OK maildrop has 2 messages ({size1 + size2} octets)\r\n"
        f"+OK 2 {size1 + size2}\r\n"
        "+OK message 2 deleted\r\n"
        "+OK\r\n"
        "+OK lab.test POP3 server signing off (1 messages left)\r\n"
    )
    assert sent == expected
    assert isinstance(out[-1], Close)
    assert store.expunged == [2]  # RSET undid DELE 1; DELE 2 committed at QUIT
    assert store.locked == set()
    states = [e.state for e in events_of(out)]
    assert states[0] == "AUTHORIZATION" and "TRANSACTION" in states and states[-1] == "UPDATE"


def test_byte_stuffing_and_sizes():
    stuffed = byte_stuff(MSG1)
    assert b"\r\n..dot line\r\n...two dots\r\n" in stuffed and stuffed.endswith(b"end\r\n.\r\n")
    assert byte_stuff(b".x\r\n") == b"..x\r\n.\r\n"
    assert byte_stuff(b"no final crlf") == b"no final crlf\r\n.\r\n"
    assert byte_stuff(b"") == b".\r\n"


def test_retr_events_one_data_event_with_stuffed_bytes():
    conn, _ = make()
    conn.start()
    talk(conn, "USER alice", "PASS secret")
    out = receive(conn, b"RETR 1\r\n")
    kinds = [(e.side, e.kind, e.verb) for e in events_of(out)]
    assert kinds == [(Side.CLIENT, Kind.COMMAND, "RETR"), (Side.SERVER, Kind.REPLY, "RETR"),
                     (Side.SERVER, Kind.DATA, "RETR")]
    assert events_of(out)[2].raw == byte_stuff(MSG1)


def test_top():
    assert top_of(MSG2, 0) == b"Subject: two\r\n\r\n"
    assert top_of(MSG2, 2) == b"Subject: two\r\n\r\nline1\r\nline2\r\n"
    assert top_of(MSG2, 99) == MSG2
    assert top_of(b"Only: header\r\n", 3) == b"Only: header\r\n"


def test_apop_login_and_redaction():
    conn, _ = make()
    conn.start()
    digest = apop_digest(STAMP, "secret")
    out = receive(conn, f"APOP alice {digest}\r\n".encode())
    assert send_all(out).startswith(b"+OK alice's maildrop has 2")
    cmd = events_of(out)[0]
    assert cmd.redacted == b"APOP alice ********\r\n" and digest.encode() not in cmd.shown()
    assert conn.state is State.TRANSACTION


def test_apop_wrong_digest_and_unknown_user():
    conn, _ = make()
    conn.start()
    assert talk(conn, "APOP alice " + apop_digest(STAMP, "wrong")) == b"-ERR [AUTH] invalid user name or digest\r\n"
    assert talk(conn, "APOP nobody " + apop_digest(STAMP, "x")).startswith(b"-ERR [AUTH]")
    assert talk(conn, "APOP alice nothex") == b"-ERR the APOP digest is 32 hexadecimal digits (MD5)\r\n"
    assert conn.state is State.AUTHORIZATION


def test_pass_is_redacted_and_may_hold_spaces():
    store = FakeStore()
    store.deliver("bob", b"x\r\n")
    conn = Pop3ServerConnection(store, STAMP)
    conn.start()
    out = receive(conn, b'USER bob\r\nPASS b o"b\r\n')
    assert send_all(out).splitlines()[1].startswith(b"+OK bob's maildrop")
    pass_event = [e for e in events_of(out) if e.verb == "PASS" and e.kind is Kind.COMMAND][0]
    assert pass_event.redacted == b"PASS ********\r\n"
    assert pass_event.raw == b'PASS b o"b\r\n'


def test_bad_password_and_pass_without_user():
    conn, store = make()
    conn.start()
    assert talk(conn, "PASS secret") == b"-ERR send USER first\r\n"
    assert talk(conn, "USER alice", "PASS nope") == b"+OK send PASS for alice\r\n-ERR [AUTH] invalid user name or password\r\n"
    # the failed attempt forgets the USER: PASS alone is refused again
    out = receive(conn, b"PASS secret\r\n")
    assert send_all(out) == b"-ERR send USER first\r\n"
    assert events_of(out)[0].notes[0].rule == "pass-without-user"
    assert store.locked == set()


def test_lock_in_use_and_released_on_eof():
    store = FakeStore()
    first, _ = make(store)
    second, _ = make(store)
    first.start(), second.start()
    assert talk(first, "USER alice", "PASS secret").count(b"+OK") == 2
    assert talk(second, "USER alice", "PASS secret").endswith(b"-ERR [IN-USE] maildrop already locked by another session\r\n")
    assert second.state is State.AUTHORIZATION
    talk(first, "DELE 1", "DELE 2")
    out = settle(first.eof())  # dropped connection: no UPDATE, nothing deleted; the lock released by a store job
    assert [n.rule for e in events_of(out) for n in e.notes] == ["no-quit"]
    assert store.expunged == [] and len(store.mail["alice"]) == 2
    assert talk(second, "USER alice", "PASS secret").count(b"+OK") == 2


def test_autologout_deletes_nothing_and_says_nothing():
    conn, store = make(idle_timeout=600)
    assert conn.idle_timeout_seconds == 600
    conn.start()
    talk(conn, "USER alice", "PASS secret", "DELE 1")
    out = settle(conn.idle_timeout())
    assert send_all(out) == b"" and isinstance(out[-1], Close)
    assert store.expunged == [] and store.locked == set()
    assert receive(conn, b"STAT\r\n") == []


def test_empty_or_missing_maildrop():
    store = FakeStore()
    conn = Pop3ServerConnection(store, STAMP)  # alice has no INBOX at all
    conn.start()
    sent = talk(conn, "USER alice", "PASS secret", "STAT", "LIST", "UIDL", "RETR 1", "QUIT")
    assert sent.decode().splitlines()[1:] == [
        "+OK alice's maildrop has 0 messages (0 octets)", "+OK 0 0", "+OK 0 messages (0 octets)", ".",
        "+OK unique-id listing follows", ".", "-ERR no such message, only 0 messages in maildrop",
        "+OK lab.test POP3 server signing off (0 messages left)"]


@pytest.mark.parametrize("line,reply", [
    ("RETR 0", "-ERR no such message, only 2 messages in maildrop"),
    ("RETR 3", "-ERR no such message, only 2 messages in maildrop"),
    ("RETR -1", "-ERR invalid message number '-1'"),
    ("RETR +1", "-ERR invalid message number '+1'"),
    ("RETR 1.5", "-ERR invalid message number '1.5'"),
    ("RETR x", "-ERR invalid message number 'x'"),
    ("RETR ９", "-ERR invalid message number '９'"),
    ("RETR 99999999999999999999999999", "-ERR no such message, only 2 messages in maildrop"),
    ("RETR", "-ERR missing argument"),
    ("RETR 1 2", "-ERR too many arguments"),
    ("RETR  1", "-ERR arguments are separated by a single space"),
    ("TOP 1", "-ERR missing argument"),
    ("TOP 1 -1", "-ERR invalid line count '-1'"),
    ("TOP", "-ERR missing arguments"),
    ("DELE", "-ERR missing argument"),
    ("LIST 1 2", "-ERR too many arguments"),
    ("STAT 1", "-ERR this command takes no arguments"),
    ("NOOP x", "-ERR this command takes no arguments"),
    ("QUIT now", "-ERR this command takes no arguments"),
    ("USER alice", "-ERR USER not allowed in TRANSACTION state"),
    ("PASS x", "-ERR PASS not allowed in TRANSACTION state"),
    ("APOP a b", "-ERR APOP not allowed in TRANSACTION state"),
    ("STLS", "-ERR STLS not allowed in TRANSACTION state"),
    ("XYZZY", "-ERR unknown command"),
    ("", "-ERR unknown command"),
])
def test_bad_transaction_commands(line, reply):
    conn, _ = make()
    conn.start()
    talk(conn, "USER alice", "PASS secret")
    assert talk(conn, line) == (reply + "\r\n").encode()
    assert conn.state is State.TRANSACTION and not conn.closed
    assert talk(conn, "STAT").startswith(b"+OK 2 ")


@pytest.mark.parametrize("command", ["STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1",
                                     "UIDL", "UIDL 1"])
def test_transaction_commands_refused_in_authorization(command):
    conn, _ = make()
    conn.start()
    out = receive(conn, (command + "\r\n").encode())
    verb = command.split()[0]
    assert send_all(out) == f"-ERR {verb} not allowed in AUTHORIZATION state\r\n".encode()
    assert events_of(out)[0].notes[0].rule == "wrong-state"


@pytest.mark.parametrize("line,reply", [
    ("USER", "-ERR missing argument"), ("PASS", "-ERR missing argument"),
    ("USER a b", "-ERR too many arguments"), ("APOP alice", "-ERR missing argument"),
    ("CAPA x", "-ERR this command takes no arguments"), ("STLS", "-ERR [SYS/PERM] TLS is not available on this server"),
])
def test_bad_authorization_commands(line, reply):
    conn, _ = make()
    conn.start()
    assert talk(conn, line) == (reply + "\r\n").encode()


def test_commands_are_case_insensitive_and_bare_lf_is_noted():
    conn, _ = make()
    conn.start()
    out = receive(conn, b"user alice\npass secret\nstat\n")
    assert send_all(out).splitlines()[2].startswith(b"+OK 2 ")
    assert all(e.notes[0].rule == "bare-lf" for e in events_of(out) if e.side is Side.CLIENT)


@pytest.mark.parametrize("chunk", [1, 100, 10_000])
def test_too_long_line_is_refused_and_next_line_works(chunk):
    conn, _ = make()
    conn.start()
    data = b"USER " + b"a" * 5000 + b"\r\nCAPA\r\n"
    out = feed(conn, data, chunk)
    assert send_all(out).startswith(b"-ERR line too long\r\n+OK Capability list follows\r\n")
    long_event = events_of(out)[0]
    assert long_event.size == 5007 and len(long_event.raw) <= MAX_COMMAND_LINE + 2
    assert long_event.notes[0].rule == "line-too-long"


def test_capa_before_and_after_stls():
    conn, _ = make(tls_available=True)
    conn.start()
    caps = talk(conn, "CAPA").decode().splitlines()
    assert caps[0] == "+OK Capability list follows" and caps[-1] == "."
    assert {"TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES", "STLS"} <= set(caps)
    assert any(c.startswith("IMPLEMENTATION ") for c in caps)
    out = receive(conn, b"USER alice\r\nSTLS\r\nPASS secret\r\n")  # PASS pipelined after STLS
    assert send_all(out) == b"+OK send PASS for alice\r\n+OK Begin TLS negotiation now\r\n"
    assert isinstance(out[-1], StartTLS)
    assert [n.rule for e in events_of(out) for n in e.notes] == ["after-stls"]
    assert conn.tls_started() == []
    caps = talk(conn, "CAPA").decode().splitlines()
    assert "STLS" not in caps and "USER" in caps
    assert talk(conn, "STLS") == b"-ERR already using TLS\r\n"
    assert talk(conn, "PASS secret") == b"-ERR send USER first\r\n"  # USER before TLS is forgotten
    assert talk(conn, "USER alice", "PASS secret").count(b"+OK") == 2


def test_quit_in_authorization_and_after_quit():
    conn, _ = make()
    conn.start()
    out = receive(conn, b"QUIT\r\nNOOP\r\n")
    assert send_all(out) == b"+OK lab.test POP3 server signing off\r\n"
    assert isinstance(out[-1], Close)
    assert [n.rule for e in events_of(out) for n in e.notes] == ["after-quit"]
    assert receive(conn, b"NOOP\r\n") == []


def test_too_many_bad_commands_closes():
    conn, store = make(max_bad_commands=3)
    conn.start()
    talk(conn, "USER alice", "PASS secret")
    out = receive(conn, b"X\r\nY\r\nZ\r\nSTAT\r\n")
    assert send_all(out).endswith(b"-ERR unknown command (too many bad commands, closing)\r\n")
    assert isinstance(out[-1], Close) and store.locked == set()


def test_message_vanished_under_us():
    conn, store = make()
    conn.start()
    talk(conn, "USER alice", "PASS secret")
    del store.mail["alice"][1]  # e.g. expunged by an IMAP session meanwhile
    assert talk(conn, "RETR 1").startswith(b"-ERR [SYS/TEMP]")
    assert talk(conn, "RETR 2").startswith(b"+OK")


def test_expunge_of_a_message_already_gone_is_ok():
    """QA-21: removed by someone else meanwhile is what DELE asked for (RFC 1939 §6): +OK."""
    conn, store = make()
    conn.start()
    talk(conn, "USER alice", "PASS secret", "DELE 1")
    del store.mail["alice"][1]
    out = receive(conn, b"QUIT\r\n")
    assert send_all(out).startswith(b"+OK") and b"1 of the deleted were already removed" in send_all(out)
    assert isinstance(out[-1], Close) and store.locked == set()


def test_failed_expunge_reports_error():
    conn, store = make()
    conn.start()
    talk(conn, "USER alice", "PASS secret", "DELE 1")

    def broken(uids):
        raise OSError("disk on fire")

    conn.session.mailbox.expunge = broken
    out = receive(conn, b"QUIT\r\n")
    assert send_all(out).startswith(b"-ERR [SYS/TEMP] some deleted messages not removed (1)")
    assert isinstance(out[-1], Close) and store.locked == set()
    assert 1 in store.mail["alice"]


def test_every_output_is_a_known_type():
    conn, _ = make()
    outs = conn.start() + receive(conn, b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n")
    from mailtrace.transcript.event import Event
    assert all(isinstance(o, (Event, Send, Close, StartTLS)) for o in outs)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.booleans())
def test_random_bytes_never_raise(chunks, login):
    conn, store = make(tls_available=True)
    conn.start()
    if login:
        receive(conn, b"USER alice\r\nPASS secret\r\n")
    for chunk in chunks:
        for out in receive(conn, chunk):
            if isinstance(out, Send):
                assert out.data.startswith((b"+OK", b"-ERR")) or out.data.endswith(b".\r\n")
    settle(conn.eof())
    assert store.locked == set()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["USER alice", "PASS secret", "APOP alice 0", "STAT", "LIST", "LIST 1", "RETR 1",
                                 "RETR 2", "DELE 1", "DELE 9", "RSET", "TOP 2 1", "UIDL", "UIDL 2", "NOOP",
                                 "CAPA", "QUIT", "BOGUS", "RETR", "TOP 1"]), max_size=15))
def test_every_command_in_every_state_gets_a_status(script):
    conn, store = make(max_bad_commands=1000)
    conn.start()
    for line in script:
        out = receive(conn, (line + "\r\n").encode())
        if conn.closed and not out:
            break
        assert send_all(out)[:3] in (b"+OK", b"-ER")
    settle(conn.eof())
    assert store.locked == set()


def test_store_failures_are_negative_replies_not_crashes():
    class Broken(FakeStore):
        def lock_maildrop(self, user):
            raise ValueError("bad maildrop name")

    conn = Pop3ServerConnection(Broken(), STAMP)
    conn.start()
    assert talk(conn, "USER alice", "PASS secret").endswith(b"-ERR [SYS/PERM] cannot lock the maildrop: ValueError\r\n")

    class NoMailbox(FakeStore):
        def mailbox(self, user, name="INBOX"):
            raise OSError("disk on fire")

    store = NoMailbox()
    conn = Pop3ServerConnection(store, STAMP)
    conn.start()
    assert talk(conn, "USER alice", "PASS secret").endswith(b"-ERR [SYS/TEMP] cannot open the maildrop: OSError\r\n")
    assert store.locked == set()  # RFC 1939 §4: the lock is released before the -ERR


def unstuff(body: bytes) -> bytes:
    """What a client keeps of a multi-line response (RFC 1939 §3): terminator gone, stuffing removed."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n"
    lines = body[:-3].split(b"\r\n")[:-1] if body != b".\r\n" else []
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"Subject: s", b"\x00\xff", b" .", b"a" * 300]),
                max_size=12))
def test_retr_round_trip_and_list_size(lines):
    message = b"".join(line + b"\r\n" for line in lines)  # the wire form the store hands out
    store = FakeStore()
    store.deliver("alice", message)
    conn = Pop3ServerConnection(store, STAMP)
    conn.start()
    talk(conn, "USER alice", "PASS secret")
    size = int(talk(conn, "LIST 1").split()[2])
    out = receive(conn, b"RETR 1\r\n")
    body = events_of(out)[2].raw
    assert unstuff(body) == message and size == len(message)


def test_bad_commands_are_counted_in_a_row():
    conn, _ = make(max_bad_commands=3)
    conn.start()
    for _ in range(5):  # two bad, one good: never three in a row
        assert talk(conn, "X", "Y", "CAPA").endswith(b".\r\n")
    assert not conn.closed
    assert talk(conn, "X", "Y", "Z").endswith(b"-ERR unknown command (too many bad commands, closing)\r\n")
    assert conn.closed


def test_login_and_quit_store_work_is_a_pending_job_and_pipelined_lines_wait_for_it():
    from mailtrace.protocols.base import Pending

    conn, store = make()
    conn.start()
    out = conn.receive(b"USER alice\r\nPASS secret\r\nSTAT\r\n")
    assert isinstance(out[-1], Pending)  # the lock and the scan of the maildrop: off the event loop
    assert send_all(out) == b"+OK send PASS for alice\r\n"  # STAT waits in the buffer
    assert conn.receive(b"NOOP\r\n") == []  # and so does anything fed meanwhile
    pending = out[-1]
    after = send_all(settle_all(pending.resume(pending.job())))
    assert after == f"+OK alice's maildrop has 2 messages ({len(MSG1) + len(MSG2)} octets)\r\n+OK 2 " \
                    f"{len(MSG1) + len(MSG2)}\r\n+OK\r\n".encode()
    out = conn.receive(b"DELE 1\r\nQUIT\r\n")
    assert isinstance(out[-1], Pending) and len(store.mail["alice"]) == 2  # unlinks at QUIT: a job too
    rest = settle_all(out[-1].resume(out[-1].job()))
    assert send_all(rest).startswith(b"+OK lab.test POP3 server signing off (1 messages left")
    assert isinstance(rest[-1], Close) and len(store.mail["alice"]) == 1


def settle_all(outputs):
    from mailtrace.protocols.base import settle

    return settle(outputs)


# --- UTF8 (RFC 6856) --------------------------------------------------------------------------
UTF8_MESSAGE = "From: José <josé@lab.test>\r\nSubject: canción\r\n\r\nniño\r\n".encode()


def test_utf8_capability_and_command():
    store = FakeStore()
    store.deliver("alice", UTF8_MESSAGE)
    store.deliver("alice", b"Subject: =?UTF-8?Q?canci=C3=B3n?=\r\n\r\nni\xc3\xb1o\r\n")  # encoded-word, 8-bit body
    conn = Pop3ServerConnection(store, STAMP)
    conn.start()
    assert b"\r\nUTF8\r\n" in talk(conn, "CAPA")
    talk(conn, "USER alice", "PASS secret")
    # §2.1: not in UTF-8 mode, a message with UTF-8 headers is refused with [UTF8] (§5) ...
    for command in (b"RETR 1\r\n", b"TOP 1 0\r\n"):
        status = events_of(receive(conn, command))[1]
        assert status.raw.startswith(b"-ERR [UTF8] ") and status.response_code == "UTF8"
    # ... an ASCII header (encoded-words) goes as it is
    assert events_of(receive(conn, b"RETR 2\r\n"))[1].raw.startswith(b"+OK")
    assert talk(conn, "UTF8").startswith(b"-ERR")  # only in AUTHORIZATION (§2)


def test_utf8_mode_sends_the_message_as_is_and_forbids_stls():
    store = FakeStore()
    store.deliver("alice", UTF8_MESSAGE)
    conn = Pop3ServerConnection(store, STAMP, Pop3Config(tls_available=True))
    conn.start()
    assert talk(conn, "UTF8").startswith(b"+OK")
    assert talk(conn, "STLS").startswith(b"-ERR")  # §2.1: no STLS after UTF8
    talk(conn, "USER alice", "PASS secret")
    out = receive(conn, b"RETR 1\r\n")  # the message is read by a store job
    assert unstuff(events_of(out)[2].raw) == UTF8_MESSAGE
