"""The sans-I/O SMTP server core: bytes in, events and replies out (fed whole and byte by byte)."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailtrace.protocols.base import Close, Pending, Send, StartTLS
from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection, State
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Event, Kind, Side

from conversation import Conversation

LECTURE = (b"HELO crepes.fr\r\n", b"MAIL FROM:<alice@crepes.fr>\r\n", b"RCPT TO:<bob@lab.test>\r\n",
           b"DATA\r\n", b"Subject: Do you like ketchup?\r\n\r\nHow about pickles?\r\n..and dots\r\n.\r\n",
           b"QUIT\r\n")


class Run(Conversation):
    """One core connection driven by tests/conversation.py; ``feed``/``say`` chain."""

    def __init__(self, store, config: SmtpConfig | None = None, **kw) -> None:
        super().__init__(SmtpServerConnection(config or SmtpConfig(), store, clock=time.time,
                                              client_address="127.0.0.1:4000", **kw))
        self.conn = self.core

    _run = Conversation._take  # outputs of a direct call on the core (tls_started, idle_timeout, eof)

    def feed(self, data: bytes, chunk: int = 0) -> "Run":
        self.send(data, chunk)
        return self

    def say(self, *lines: bytes) -> "Run":
        """Send lines one at a time, each after the previous reply (a polite client)."""
        for line in lines:
            self.send(line)
        return self


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(tmp_path / "mail", {"alice": "alice", "bob": "bob"}, fsync=False)
    yield s
    s.close()


def delivered(store, user="bob") -> list[bytes]:
    box = store.mailbox(user)
    box.refresh()
    return [box.read(m.uid) for m in box.messages()]


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_lecture_session_any_chunking(store, chunk):
    run = Run(store)
    for line in LECTURE:
        run.feed(line, chunk)
    assert run.codes() == ["220", "250", "250", "250", "354", "250", "221"]
    assert isinstance(run.outputs[-1], Close)
    kinds = [(e.side, e.kind, e.verb) for e in run.events]
    assert kinds[:3] == [(Side.SERVER, Kind.REPLY, ""), (Side.CLIENT, Kind.COMMAND, "HELO"),
                         (Side.SERVER, Kind.REPLY, "HELO")]
    data = [e for e in run.events if e.kind is Kind.DATA]
    assert len(data) == 1 and data[0].verb == "DATA" and data[0].raw == LECTURE[4]
    assert run.notes() == []
    [message] = delivered(store)
    assert message.startswith(b"Return-Path: <alice@crepes.fr>\r\nReceived: from crepes.fr ([127.0.0.1])")
    assert message.endswith(b"\r\n\r\nHow about pickles?\r\n.and dots\r\n")
    # states map the lecture's phases: handshake, transfer, closing
    states = [e.state for e in run.events if e.kind is Kind.COMMAND]
    assert states == ["ready", "mail", "rcpt", "data", "closed"]


def test_whole_stream_equals_byte_by_byte(store):
    whole = Run(store).feed(b"".join(LECTURE))
    bytewise = Run(store).feed(b"".join(LECTURE), 1)
    strip = [(e.side, e.kind, e.raw.split(b"queued")[0], e.verb, e.code, e.state) for e in whole.events]
    assert strip == [(e.side, e.kind, e.raw.split(b"queued")[0], e.verb, e.code, e.state) for e in bytewise.events]
    # the whole stream was pipelined without EHLO: flagged; byte by byte it cannot be told
    assert "no-pipelining" in whole.notes() or "pipelining-group" in whole.notes()
    assert bytewise.notes() == []


def test_ehlo_extensions_multiline(store):
    run = Run(store, SmtpConfig(tls_available=True)).say(b"EHLO client.example\r\n")
    lines = run.sent.split(b"\r\n")[1:-1]
    assert lines[0].startswith(b"250-lab.test Hello client.example")
    assert [ln[4:] for ln in lines[1:]] == [b"PIPELINING", b"SIZE 10485760", b"8BITMIME", b"SMTPUTF8", b"ENHANCEDSTATUSCODES",
                                            b"HELP", b"STARTTLS", b"AUTH PLAIN LOGIN"]
    assert lines[-1].startswith(b"250 ") and all(ln.startswith(b"250-") for ln in lines[:-1])
    replies = [e for e in run.events if e.kind is Kind.REPLY and e.verb == "EHLO"]
    assert len(replies) == 9  # one event per reply line
    assert [e.response_code for e in replies] == ["", "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8",
                                                         "ENHANCEDSTATUSCODES",
                                                         "HELP", "STARTTLS", "AUTH"]
    from mailtrace import knowledge

    assert knowledge.annotate(replies[1]).rfc == "RFC 2920 §3"  # each extension line is explained


@pytest.mark.parametrize("lines,expected", [
    ([b"FOO\r\n"], "500"),
    ([b"TURN\r\n"], "502"),
    ([b"EXPN staff\r\n"], "502"),
    ([b"HELO\r\n"], "501"),
    ([b"MAIL FROM:<a@b.c>\r\n"], "503"),
    ([b"HELO x\r\n", b"RCPT TO:<bob@lab.test>\r\n"], "503"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"MAIL FROM:<a@b.c>\r\n"], "503"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"DATA\r\n"], "503"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<zed@lab.test>\r\n", b"DATA\r\n"], "554"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<zed@lab.test>\r\n"], "550"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@gmail.com>\r\n"], "550"),
    ([b"HELO x\r\n", b"MAIL FROM:<a@b.c> SIZE=10\r\n"], "555"),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c> SIZE=999999999\r\n"], "552"),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c> BODY=9BIT\r\n"], "501"),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c> FOO=1\r\n"], "555"),
    ([b"EHLO x\r\n", b"MAIL FROM:<not an address>\r\n"], "501"),
    ([b"EHLO x\r\n", b"MAIL TO:<a@b.c>\r\n"], "501"),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<>\r\n"], "501"),
    ([b"VRFY bob\r\n"], "252"),
    ([b"HELP\r\n"], "214"),
    ([b"HELP RCPT\r\n"], "214"),
    ([b"HELP XYZZY\r\n"], "504"),
    ([b"NOOP\r\n"], "250"),
    ([b"RSET\r\n"], "250"),
    ([b"STARTTLS\r\n"], "502"),
    ([b"HELO x\r\n", b"AUTH PLAIN\r\n"], "503"),
    ([b"EHLO x\r\n", b"AUTH CRAM-MD5\r\n"], "504"),
    ([b"X" * 600 + b"\r\n"], "500"),
    ([b"EHLO x\x00y\r\n"], "501"),  # a control character is no hostname (and is not echoed back)
    ([b"HELO x\ty\r\n"], "501"),
])
def test_reply_codes(store, lines, expected):
    run = Run(store).say(*lines)
    assert run.codes()[-1] == expected, run.sent


def test_one_unknown_recipient_does_not_affect_the_others(store):
    run = Run(store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<alice@lab.test>\r\n",
                         b"RCPT TO:<nobody@lab.test>\r\n", b"RCPT TO:<bob@LOCALHOST>\r\n", b"DATA\r\n",
                         b"Subject: x\r\n\r\nhi\r\n.\r\n")
    assert run.codes()[-5:] == ["250", "550", "250", "354", "250"]
    assert len(delivered(store, "alice")) == 1 and len(delivered(store, "bob")) == 1
    assert b"for <bob@localhost>" in delivered(store, "bob")[0]


def test_quoted_local_parts_are_the_same_mailbox_and_may_hold_a_bracket(store):
    """RFC 5321 §4.1.2: "all quoted forms MUST be treated as equivalent" (<"bob"@lab.test> is
    bob's), and qtextSMTP includes '>' (%d62): <"a>b"@lab.test> is one path, not a path and
    some text after it.  A quoted address that is no local user is still refused (no relay)."""
    run = Run(store).say(b"EHLO x\r\n", b'MAIL FROM:<"a>b"@lab.test>\r\n', b'RCPT TO:<"bob"@lab.test>\r\n',
                         b'RCPT TO:<"b\\ob"@lab.test>\r\n', b'RCPT TO:<"bob@else.org"@lab.test>\r\n',
                         b'RCPT TO:<"alice">\r\n', b"DATA\r\n", b"Subject: x\r\n\r\nhi\r\n.\r\n")
    assert run.codes()[-7:] == ["250", "250", "250", "550", "501", "354", "250"], run.sent
    assert len(delivered(store, "bob")) == 1  # one copy: the three forms are one mailbox
    assert b'"a>b"@lab.test' in delivered(store, "bob")[0]  # the reverse path, as it was sent


def test_postmaster_and_duplicate_recipients(store):
    run = Run(store, SmtpConfig(postmaster="alice")).say(
        b"HELO x\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<Postmaster>\r\n", b"RCPT TO:<bob@lab.test>\r\n",
        b"RCPT TO:<BOB@lab.test>\r\n", b"DATA\r\n", b"x\r\n.\r\n")
    assert run.codes()[-5:] == ["250", "250", "250", "354", "250"]
    assert len(delivered(store, "alice")) == 1 and len(delivered(store, "bob")) == 1


def test_too_many_recipients_452(store):
    run = Run(store, SmtpConfig(max_recipients=1)).say(
        b"HELO x\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"RCPT TO:<alice@lab.test>\r\n",
        b"RCPT TO:<bob@lab.test>\r\n")
    assert run.codes()[-3:] == ["250", "452", "250"]  # a recipient already accepted is no new one


def test_sendmail_style_arguments_accepted_but_annotated(store):
    run = Run(store).say(b"HELO x\r\n", b"MAIL FROM: <a@b.c>\r\n", b"RCPT TO: bob@lab.test\r\n")
    assert run.codes()[-2:] == ["250", "250"]
    cmds = {e.verb: [n.rule for n in e.notes] for e in run.events if e.kind is Kind.COMMAND}
    assert cmds["MAIL"] == ["space-after-colon"]
    assert cmds["RCPT"] == ["space-after-colon", "missing-brackets"]


def test_bare_lf_accepted_and_flagged_like_nc(store):
    run = Run(store).say(b"HELO x\n", b"MAIL FROM:<a@b.c>\n", b"RCPT TO:<bob@lab.test>\n", b"DATA\n",
                         b"Subject: lf\n\nbody\n.\n")
    assert run.codes()[-1] == "250"
    assert run.notes().count("bare-lf") == 5
    assert delivered(store)[0].endswith(b"body\r\n")  # the store gives the wire (CRLF) form


def test_eight_bit_without_8bitmime(store):
    body = "Subject: ñ\r\n\r\ncañón\r\n.\r\n".encode()
    plain = Run(store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n", body)
    assert "8bit-without-8bitmime" in plain.notes()
    declared = Run(store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c> BODY=8BITMIME\r\n", b"RCPT TO:<bob@lab.test>\r\n",
                              b"DATA\r\n", body)
    assert "8bit-without-8bitmime" not in declared.notes()


def test_data_without_recipient_is_flagged(store):
    run = Run(store).say(b"HELO x\r\n", b"DATA\r\n")
    assert run.codes()[-1] == "503" and "data-no-recipient" in run.notes()


def test_command_line_too_long(store):
    run = Run(store).say(b"HELO " + b"x" * 100_000 + b"\r\n", b"NOOP\r\n")
    assert run.codes()[-2:] == ["500", "250"]
    ev = [e for e in run.events if e.kind is Kind.COMMAND][0]
    assert ev.size == 100_007 and len(ev.raw) <= 514 and "line-too-long" in [n.rule for n in ev.notes]


@pytest.mark.parametrize("chunk", [1, 3, 1000, 1 << 20])
def test_oversize_message_552_nothing_delivered(store, chunk):
    cfg = SmtpConfig(max_message_size=100_000)
    run = Run(store, cfg).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n")
    body = (b"y" * 98 + b"\r\n") * 3000 + b".\r\n"
    run.feed(body, chunk)
    assert run.codes()[-1] == "552"
    assert delivered(store) == []
    data = [e for e in run.events if e.kind is Kind.DATA][0]
    assert data.size == len(body) and len(data.raw) < 70_000
    run.say(b"NOOP\r\n")
    assert run.codes()[-1] == "250"


@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_end_of_data_split_anywhere_and_dot_unstuffing(store, chunk):
    body = b"..leading\r\n.\r\n"[:0] + b"a\r\n..x\r\n...\r\n.b\r\nlast\r\n.\r\n"
    run = Run(store).say(b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n")
    run.feed(body + b"QUIT\r\n", chunk)
    assert run.codes()[-2:] == ["250", "221"]
    # (no header section: the blank line goes after the trace headers, as Postfix does)
    assert delivered(store)[0].split(b"\r\n", 4)[-1] == b"\r\na\r\n.x\r\n..\r\nb\r\nlast\r\n"
    assert [e.raw for e in run.events if e.kind is Kind.DATA] == [body]


def test_empty_message_and_long_text_line(store):
    run = Run(store).say(b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                         b"x" * 1200 + b"\r\n.\r\n")
    assert run.codes()[-1] == "250" and "line-too-long" in run.notes()
    run.say(b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n", b".\r\n")
    assert run.codes()[-1] == "250"


def test_legitimate_pipelining_after_ehlo_is_not_flagged(store):
    run = Run(store).say(b"EHLO x\r\n")
    run.feed(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\nRCPT TO:<alice@lab.test>\r\nDATA\r\n")
    assert run.codes()[-4:] == ["250", "250", "250", "354"] and run.notes() == []
    run.feed(b"Subject: p\r\n\r\nx\r\n.\r\n")
    assert run.codes()[-1] == "250" and run.notes() == []


def test_command_before_greeting_and_without_pipelining(store):
    conn = SmtpServerConnection(SmtpConfig(), store, clock=time.time)
    assert conn.receive(b"HELO early\r\n") == []
    outs = conn.start()
    notes = [n.rule for o in outs if isinstance(o, Event) for n in o.notes]
    assert notes == ["before-greeting"]
    run = Run(store).say(b"HELO x\r\n")
    run.feed(b"NOOP\r\nNOOP\r\n")
    assert run.notes() == ["pipelining-group"]  # NOOP must end a group
    run2 = Run(store).say(b"HELO x\r\n")
    run2.feed(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\n")
    assert run2.notes() == ["no-pipelining"]  # HELO: no PIPELINING


def test_starttls_resets_and_hides_starttls(store):
    run = Run(store, SmtpConfig(tls_available=True)).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RSET\r\n")
    run.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.y>\r\n")  # injected plaintext after STARTTLS
    assert run.codes()[-1] == "220" and isinstance(run.outputs[-1], StartTLS)
    assert "starttls-injection" in run.notes()
    run._run(run.conn.tls_started())
    run.say(b"MAIL FROM:<a@b.c>\r\n")
    assert run.codes()[-1] == "503"  # must EHLO again
    n = len(run.sent)
    run.say(b"EHLO x\r\n")
    assert b"STARTTLS" not in run.sent[n:] and b"AUTH PLAIN LOGIN" in run.sent[n:]
    run.say(b"STARTTLS\r\n")
    assert run.codes()[-1] == "503"


def test_logging_in_then_quitting_is_an_account_check_not_a_mistake(store):
    """A mail program checking an account logs in and quits: no "left without any MAIL" note
    (that one is for a client greeted that leaves without trying anything)."""
    run = Run(store).say(b"EHLO x\r\n", b"AUTH PLAIN " + base64.b64encode(b"\0alice\0alice") + b"\r\n",
                         b"QUIT\r\n")
    assert run.codes()[-2:] == ["235", "221"]
    assert "left-without-transaction" not in [n.rule for e in run.events for n in e.notes]
    probe = Run(store).say(b"EHLO x\r\n", b"QUIT\r\n")
    assert "left-without-transaction" in [n.rule for e in probe.events for n in e.notes]


def test_auth_plain_and_login_redacted(store):
    run = Run(store).say(b"EHLO x\r\n", b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong") + b"\r\n")
    assert run.codes()[-1] == "535"
    run.say(b"AUTH PLAIN\r\n")
    assert run.codes()[-1] == "334"
    run.say(base64.b64encode(b"\0alice\0alice") + b"\r\n")
    assert run.codes()[-1] == "235" and run.conn.user == "alice"
    secrets = [e for e in run.events if e.side is Side.CLIENT and e.verb == "AUTH"]
    assert all(e.redacted is not None and b"alice" not in base64.b64decode(e.shown().split()[-1] + b"==")
               for e in secrets if e.kind is Kind.COMMAND and b" " in e.raw.strip()[5:])
    assert [e.shown() for e in secrets if e.kind is Kind.DATA] == [b"***\r\n"]
    login = Run(store).say(b"EHLO x\r\n", b"AUTH LOGIN\r\n", base64.b64encode(b"bob") + b"\r\n",
                           base64.b64encode(b"bob") + b"\r\n")
    assert login.codes()[-3:] == ["334", "334", "235"]
    assert b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" in login.sent
    cancel = Run(store).say(b"EHLO x\r\n", b"AUTH LOGIN\r\n", b"*\r\n", b"NOOP\r\n")
    assert cancel.codes()[-2:] == ["501", "250"]
    garbage = Run(store).say(b"EHLO x\r\n", b"AUTH PLAIN\r\n", b"!!!\r\n")
    assert garbage.codes()[-1] == "501"


def test_auth_plain_authzid_must_be_the_user(store):
    """RFC 4616 §2: a server that does not let authcid act as authzid fails the exchange."""
    other = Run(store).say(b"EHLO x\r\n", b"AUTH PLAIN " + base64.b64encode(b"bob\0alice\0alice") + b"\r\n")
    assert other.codes()[-1] == "535" and other.conn.user == ""
    same = Run(store).say(b"EHLO x\r\n", b"AUTH PLAIN " + base64.b64encode(b"alice\0alice\0alice") + b"\r\n")
    assert same.codes()[-1] == "235" and same.conn.user == "alice"


def test_cleartext_auth_flagged_off_loopback(store):
    run = Run(store, secure_channel=False).say(b"EHLO x\r\n", b"AUTH PLAIN " + base64.b64encode(b"\0bob\0bob") + b"\r\n")
    assert run.codes()[-1] == "235" and "cleartext-auth" in run.notes()


def test_idle_timeout_421(store):
    run = Run(store, SmtpConfig(idle_timeout=5))
    assert run.conn.idle_timeout_seconds == 5
    run._run(run.conn.idle_timeout())
    assert run.codes()[-1] == "421" and isinstance(run.outputs[-1], Close)
    assert run.conn.receive(b"NOOP\r\n") == []


def test_too_many_errors_421(store):
    run = Run(store).feed(b"\x00\xff garbage\r\n" * 50)
    assert run.codes()[-1] == "421" and run.codes().count("500") == 20
    assert isinstance(run.outputs[-1], Close)


def test_disconnect_mid_data_delivers_nothing(store):
    run = Run(store).say(b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                         b"Subject: cut\r\n\r\nhalf a mess")
    run._run(run.conn.eof())
    assert delivered(store) == []
    data = [e for e in run.events if e.kind is Kind.DATA][0]
    assert data.raw.endswith(b"half a mess") and data.incomplete
    assert run.conn.ended and run.conn.receive(b"NOOP\r\n") == []


def test_store_failure_gives_451(store):
    class Broken:
        def has_user(self, user):
            return True

        def check_password(self, user, password):
            return False

        def deliver(self, user, message, mailbox="INBOX"):
            raise OSError("disk full")

    run = Run(Broken()).say(b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                            b"x\r\n.\r\n", b"QUIT\r\n")
    assert run.codes()[-2:] == ["451", "221"]


def test_250_only_after_the_delivery_job(store):
    conn = SmtpServerConnection(SmtpConfig(), store, clock=time.time)
    conn.start()
    outs = conn.receive(b"HELO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n")
    pending = outs[-1]
    assert isinstance(pending, Pending)
    assert b"queued" not in b"".join(o.data for o in outs if isinstance(o, Send))
    assert conn.receive(b"NOOP\r\n") == []  # buffered while the delivery runs
    after = pending.resume(pending.job())
    text = b"".join(o.data for o in after if isinstance(o, Send))
    assert text.startswith(b"250 2.0.0 OK: queued") and text.count(b"250 2.0.0 OK\r\n") == 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise(store, data, chunk):
    run = Run(store)
    run.feed(data, chunk)
    run._run(run.conn.eof())
    for e in run.events:
        if e.kind is Kind.REPLY:
            assert e.code[0] in "2345"


COMMAND_WORDS = [b"HELO x", b"EHLO x", b"MAIL FROM:<a@b.c>", b"RCPT TO:<bob@lab.test>", b"RCPT TO:<z@lab.test>",
                 b"DATA", b"RSET", b"NOOP", b"VRFY bob", b"EXPN x", b"HELP", b"STARTTLS", b"AUTH PLAIN",
                 b"AUTH LOGIN", b"QUIT", b"x\r\n.", b"*", b"Zm9v", b"BOGUS", b"MAIL FROM: x"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(COMMAND_WORDS), max_size=25))
def test_every_command_sequence_gets_proper_replies(store, words):
    run = Run(store, SmtpConfig(tls_available=True))
    for word in words:
        if run.conn.state is State.CLOSED:
            break
        before = len(run.codes())
        run.say(word + b"\r\n")
        if isinstance(run.outputs[-1], StartTLS):
            run._run(run.conn.tls_started())
        if run.conn.state is not State.DATA:
            lines = word.count(b"\r\n") + 1
            assert len(run.codes()) == before + lines or run.conn.state is State.CLOSED


def test_path_errors_tell_keyword_from_address(store):
    """501 5.5.4 when FROM:/TO: is missing; 501 5.1.7 / 5.1.3 (RFC 3463 §3.2) for a bad address."""
    run = Run(store).say(b"EHLO x\r\n", b"MAIL <a@b.c>\r\n", b"MAIL FROM:<a b@c>\r\n", b"MAIL FROM:<a@b.c>\r\n",
                         b"RCPT <bob@lab.test>\r\n", b"RCPT TO:<b ob@lab.test>\r\n")
    lines = run.sent.decode().splitlines()[-5:]
    assert lines[0] == "501 5.5.4 Syntax: MAIL FROM:<address>"
    assert lines[1].startswith("501 5.1.7 Bad sender address syntax (")
    assert lines[2] == "250 2.1.0 OK"
    assert lines[3] == "501 5.5.4 Syntax: RCPT TO:<address>"
    assert lines[4].startswith("501 5.1.3 Bad recipient address syntax (")


# --- SMTPUTF8 (RFC 6531) ----------------------------------------------------------------------
@pytest.fixture
def utf8_store(tmp_path):
    s = MaildirStore(tmp_path / "mail", {"bob": "bob", "josé": "pw"}, fsync=False)
    yield s
    s.close()


def test_utf8_addresses_need_the_smtputf8_parameter(utf8_store):
    run = Run(utf8_store).say(b"EHLO x\r\n", "MAIL FROM:<maría@ejemplo.es>\r\n".encode(),
                              b"MAIL FROM:<alice@example.org>\r\n", "RCPT TO:<josé@lab.test>\r\n".encode())
    replies = [e.raw for e in run.events if e.kind is Kind.REPLY][-3:]
    assert replies[0].startswith(b"550 5.6.7 ")  # §3.5: MAIL -> 550, X.6.7
    assert replies[1].startswith(b"250 ")
    assert replies[2].startswith(b"553 5.6.7 ")  # §3.5: RCPT -> 553, X.6.7
    assert delivered(utf8_store, "josé") == []


def test_smtputf8_takes_no_value(utf8_store):
    run = Run(utf8_store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c> SMTPUTF8=yes\r\n")
    assert run.codes()[-1] == "501"


@pytest.mark.parametrize("tls, keyword", [(False, b"UTF8SMTP"), (True, b"UTF8SMTPS")])
def test_utf8_message_delivered_as_sent_with_utf8smtp_trace(utf8_store, tls, keyword):
    # UTF-8 in the header only: SMTPUTF8 covers it (no BODY=8BITMIME needed for an ASCII body)
    message = "From: María <maría@ejemplo.es>\r\nSubject: canción\r\n\r\nHola\r\n".encode()
    run = Run(utf8_store, tls=tls).say(b"EHLO x\r\n", "MAIL FROM:<maría@ejemplo.es> SMTPUTF8\r\n".encode(),
                                       "RCPT TO:<Jose\u0301@lab.test>\r\n".encode(),  # decomposed é: same user
                                       b"DATA\r\n", message + b".\r\n")
    assert run.codes()[-3:] == ["250", "354", "250"]
    assert run.notes() == []
    [stored] = delivered(utf8_store, "josé")
    head, _, content = stored.partition(b"\r\n\r\n")
    assert stored.endswith(message)  # byte for byte after the trace lines
    assert b" with " + keyword + b" id " in stored
    assert "Return-Path: <maría@ejemplo.es>".encode() in stored
    assert "for <josé@lab.test>".encode() in stored


def test_esmtp_trace_without_smtputf8(utf8_store):
    Run(utf8_store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                        b"Subject: x\r\n\r\ny\r\n.\r\n")
    [stored] = delivered(utf8_store, "bob")
    assert b" with ESMTP id " in stored


def test_raw_utf8_header_without_smtputf8_is_stored_and_noted(utf8_store):
    run = Run(utf8_store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c> BODY=8BITMIME\r\n", b"RCPT TO:<bob@lab.test>\r\n",
                              b"DATA\r\n", "Subject: pingüino\r\n\r\nok\r\n.\r\n".encode())
    assert run.codes()[-1] == "250"
    assert run.notes() == ["8bit-header-without-smtputf8"]
    # an 8-bit body under 8BITMIME with an ASCII header (encoded-word) is fine
    run = Run(utf8_store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c> BODY=8BITMIME\r\n", b"RCPT TO:<bob@lab.test>\r\n",
                              b"DATA\r\n", "Subject: =?UTF-8?Q?ping=C3=BCino?=\r\n\r\npingüino\r\n.\r\n".encode())
    assert run.notes() == []


def test_pipelined_data_after_refused_rcpt_is_no_mistake(utf8_store):
    run = Run(utf8_store).say(b"EHLO x\r\n")
    run.feed(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<nosuchuser@lab.test>\r\nDATA\r\n")
    assert run.codes()[-3:] == ["250", "550", "554"]
    assert run.notes() == []
    run.say(b"RSET\r\n", b"RCPT TO:<nosuchuser@lab.test>\r\n")
    run.say(b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<nosuchuser@lab.test>\r\n", b"DATA\r\n")  # DATA after the 550
    assert run.notes() == ["data-no-recipient"]


def test_utf8_local_part_limit_counts_octets(utf8_store):
    """RFC 5321 §4.5.3.1.1: 64 octets; 33 "é" are 66 octets of UTF-8."""
    run = Run(utf8_store).say(b"EHLO x\r\n", b"MAIL FROM:<a@b.c> SMTPUTF8\r\n",
                              ("RCPT TO:<" + "é" * 33 + "@lab.test>\r\n").encode(),
                              ("RCPT TO:<" + "é" * 32 + "@lab.test>\r\n").encode())
    assert run.codes()[-2:] == ["501", "550"]  # too long; then well-formed, but no such user


def test_events_carry_typed_facts(store):
    """Issue #10 item 4: the core's facts are typed Event fields (response_code, user, messages,
    pipelined, incomplete), the same ones a version-2 transcript saves."""
    from mailtrace.protocols.smtp import SmtpObserver
    from mailtrace.transcript.links import Action

    plain = base64.b64encode(b"\0alice\0alice")
    run = Run(store).say(b"EHLO pc1\r\n", b"AUTH PLAIN " + plain + b"\r\n")
    run.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n")  # pipelined (RFC 2920)
    run.say(b"Subject: t\r\n\r\nx\r\n.\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<bob@lab.test>\r\n",
            b"DATA\r\n", b"cut short")
    run._run(run.conn.eof())
    replies = [e for e in run.events if e.kind is Kind.REPLY]
    assert {e.response_code for e in replies if e.verb == "EHLO"} >= {"PIPELINING", "SIZE", "AUTH"}
    assert [e.user for e in replies if e.code == "235"] == ["alice"]
    (delivered,) = [e for e in replies if e.code == "250" and e.messages]
    assert [(m.action, m.user, m.mailbox) for m in delivered.messages] == [(Action.DELIVERED, "bob", "INBOX")]
    assert delivered.messages[0].uid > 0
    assert [e.verb for e in run.events if e.kind is Kind.COMMAND and e.pipelined] == ["RCPT", "DATA"]
    data = [e for e in run.events if e.kind is Kind.DATA and e.verb == "DATA"]
    assert [bool(e.incomplete) for e in data] == [False, True]
    # the observer fills in the same typed fields from the wire
    obs = SmtpObserver()
    seen = obs.feed_server(b"".join(e.raw for e in replies[:1]))
    seen += obs.feed_client(b"EHLO pc1\r\n")
    seen += obs.feed_server(b"".join(e.raw for e in replies if e.verb == "EHLO"))
    assert [e.response_code for e in seen if e.verb == "EHLO" and e.kind is Kind.REPLY] == \
        [e.response_code for e in replies if e.verb == "EHLO"]
