"""The SMTP observer sees what the server core does: same events from both sides of the wire."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import example, given, settings, strategies as st

from mailtrace.protocols.base import Pending, Send, StartTLS
from mailtrace.protocols.smtp import SmtpConfig, SmtpObserver, SmtpServerConnection
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Event, Kind, Side


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(tmp_path / "mail", {"alice": "alice", "bob": "bob"}, fsync=False)
    yield s
    s.close()


def play(store, client_chunks: list[bytes], chunk: int = 0, config: SmtpConfig | None = None):
    """Run a real core; feed the observer each client chunk, then the server's answer to it.

    Returns (core events, observer events, wire) where wire is [(side, bytes)] in order."""
    core = SmtpServerConnection(config or SmtpConfig(), store, clock=time.time, client_address="127.0.0.1:1")
    core_events: list[Event] = []
    wire: list[tuple[str, bytes]] = []

    def run(outputs):
        for out in outputs:
            if isinstance(out, Pending):
                run(out.resume(out.job()))
            elif isinstance(out, Send):
                wire.append(("S", out.data))
            elif isinstance(out, Event):
                core_events.append(out)

    run(core.start())
    for data in client_chunks:
        wire.append(("C", data))
        run(core.receive(data))
    run(core.eof())  # the connection ends for both: the observer's close() below
    obs = SmtpObserver()
    obs_events: list[Event] = []
    for side, data in wire:
        step = chunk or len(data)
        for i in range(0, len(data), step):
            piece = data[i:i + step]
            obs_events += obs.feed_client(piece) if side == "C" else obs.feed_server(piece)
    obs_events += obs.close()
    return core_events, obs_events, obs


def facts(events):
    return [(e.side, e.kind, e.raw, e.verb, e.code) for e in events if e.kind is not Kind.VIOLATION]


SEEN_FACTS = ("response_code", "continued", "command", "spooled", "incomplete", "pipelined", "arrived", "partial",
              "scripted", "unsolicited", "reason", "missing", "tls")

SESSION = [b"EHLO client\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"RCPT TO:<who@lab.test>\r\n",
           b"RCPT TO:<x@else.org>\r\n", b"DATA\r\n", b"Subject: hi\r\n\r\n..stuffed\r\nline\r\n.\r\n", b"VRFY bob\r\n",
           b"FOO\r\n", b"MAIL FROM:<>\r\n", b"RSET\r\n", b"HELP\r\n", b"AUTH PLAIN\r\n",
           base64.b64encode(b"\0alice\0alice") + b"\r\n", b"QUIT\r\n"]


@pytest.mark.parametrize("chunk", [0, 1, 3, 17])
def test_observer_matches_the_core(store, chunk):
    core, observed, obs = play(store, SESSION, chunk)
    assert facts(observed) == facts(core)
    # which stored message a 250 delivered (messages), who a 235 logged in (user): facts only the
    # server has (transcript.links); every other typed fact the observer sees as the core does
    def seen(e):
        return {name: getattr(e, name) for name in SEEN_FACTS}

    assert [seen(e) for e in observed if e.kind is Kind.REPLY] == [seen(e) for e in core if e.kind is Kind.REPLY]
    assert [e.state for e in observed if e.side is Side.SERVER] == [e.state for e in core if e.side is Side.SERVER]
    assert [n.rule for e in observed for n in e.notes] == []
    data = [e for e in observed if e.kind is Kind.DATA and e.verb == "DATA"]
    assert data[0].raw == SESSION[6]
    assert [e.shown() for e in observed if e.verb == "AUTH" and e.kind is Kind.DATA] == [b"***\r\n"]


def test_lecture_style_violations_match_the_core(store):
    lines = [b"HELO crepes.fr\n", b"MAIL FROM: alice@crepes.fr\r\n", b"RCPT TO: <bob@lab.test>\r\n", b"DATA\r\n",
             "Subject: ñ\r\n\r\nx\r\n.\r\n".encode(), b"QUIT\r\n"]
    core, observed, _ = play(store, lines)
    assert facts(observed) == facts(core)
    rules = lambda evs: [n.rule for e in evs for n in e.notes]  # noqa: E731
    assert rules(observed) == rules(core) == ["bare-lf", "space-after-colon", "missing-brackets",
                                              "space-after-colon", "8bit-without-8bitmime",
                                              "8bit-header-without-smtputf8"]


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_nul_and_control_characters_in_data_are_noted_by_both(store, chunk):
    """RFC 5322 §2.1/§3.5 and RFC 2045 §2.7: no NUL in a message (a violation); §3.5: other
    control characters are "discouraged" in a body (an informative note); §2.2: none in a
    header field (a violation).  Same notes, same
    function (DataReader.notes), for the core and the observer."""
    lines = [b"HELO pc1\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
             b"Subject: x\r\n\r\nbell \x07 and nul \x00 here\r\n.\r\n", b"MAIL FROM:<a@b.example>\r\n",
             b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n", b"Subject: y\r\n\r\ntab\tis fine\r\n.\r\n",
             b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
             b"Subject: esc \x1b[31m red\r\n\r\nbody\r\n.\r\n", b"QUIT\r\n"]
    core, observed, _ = play(store, lines, chunk)
    assert facts(observed) == facts(core)
    notes = lambda evs: [[n.rule for n in e.notes] for e in evs if e.kind is Kind.DATA]  # noqa: E731
    assert notes(observed) == notes(core) == [["nul-in-data", "control-in-data"], [], ["control-in-header"]]
    from mailtrace import knowledge
    for rule in ("nul-in-data", "control-in-data", "control-in-header"):
        entry = knowledge.lookup("smtp", "violations", rule)
        assert entry.meaning("en") and entry.meaning("es") and "RFC 5322" in entry.rfc
    assert knowledge.lookup("smtp", "violations", "control-in-data").extra.get("severity") == "info"


def test_pipelining_flags(store):
    _, observed, _ = play(store, [b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\n"])
    assert [n.rule for e in observed for n in e.notes] == ["no-pipelining"]
    _, observed, _ = play(store, [b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n",
                                  b"x\r\n.\r\n"])
    assert [n.rule for e in observed for n in e.notes] == []
    obs = SmtpObserver()
    early = obs.feed_client(b"EHLO early\r\n")
    assert [n.rule for n in early[0].notes] == ["before-greeting"]


def test_data_refused_makes_held_bytes_commands_again(store):
    core, observed, _ = play(store, [b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<no@lab.test>\r\n",
                                     b"DATA\r\n", b"NOOP\r\n"])
    assert facts(observed) == facts(core)
    assert [e.code for e in observed if e.kind is Kind.REPLY][-2:] == ["554", "250"]
    assert "data-no-recipient" in [n.rule for e in observed for n in e.notes]


def test_starttls_then_encrypted_and_injection(store):
    obs = SmtpObserver()
    obs.feed_server(b"220 mx ESMTP\r\n")
    obs.feed_client(b"EHLO x\r\n")
    obs.feed_server(b"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    obs.feed_client(b"STARTTLS\r\nMAIL FROM:<evil@x.y>\r\n")
    events = obs.feed_server(b"220 go ahead\r\n")
    assert obs.encrypted
    assert "starttls-injection" in [n.rule for e in events for n in e.notes]
    assert obs.feed_client(b"\x16\x03\x01\x02\x00") == [] and obs.feed_server(b"\x16\x03\x03") == []
    obs.tls_started()
    assert not obs.encrypted
    assert [e.verb for e in obs.feed_client(b"EHLO again\r\n")] == ["EHLO"]


def test_multiline_reply_one_event_per_line_and_bad_reply():
    obs = SmtpObserver()
    events = obs.feed_server(b"220-first\r\n220 second\r\n")
    assert [e.code for e in events] == ["220", "220"] and obs.state.value == "greeted"
    obs.feed_client(b"NOOP\r\n")
    events = obs.feed_server(b"hello?\r\n250 ok\r\n")
    assert [n.rule for n in events[0].notes] == ["bad-reply"] and events[1].verb == "NOOP"


def test_client_that_never_waits_is_read_on_with_bounded_memory():
    obs = SmtpObserver()
    obs.feed_server(b"220 x\r\n")
    obs.feed_client(b"EHLO a\r\n")
    obs.feed_server(b"250 a\r\n")
    obs.feed_client(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<b@c.d>\r\nDATA\r\n")
    line = b"L" * 70_000 + b"\r\n"  # longer than an observed line: must not be cut while held
    events = []
    for _ in range(20):
        events += obs.feed_client(line)
    events += obs.feed_client(b".\r\n")
    data = [e for e in events if e.kind is Kind.DATA]
    assert len(data) == 1 and data[0].raw == line * 20 + b".\r\n"
    assert obs._client.buffered < 100_000


def test_client_that_never_waits_after_auth_sends_sasl_responses_not_commands():
    """Past HOLD_LIMIT held octets the observer reads on as if the server had said yes: after
    AUTH that is a SASL response (RFC 4954 §4), redacted, never a command."""
    obs = SmtpObserver()
    obs.feed_server(b"220 x\r\n")
    obs.feed_client(b"EHLO a\r\n")
    obs.feed_server(b"250-a\r\n250 AUTH LOGIN\r\n")
    user, password = base64.b64encode(b"alice"), base64.b64encode(b"s3cret-pw")
    events = obs.feed_client(b"AUTH LOGIN\r\n" + user + b"\r\n" + password + b"\r\n")  # held: 334 or 5xx?
    events += obs.feed_client((b"NOOP " + b"n" * 250 + b"\r\n") * 4200)  # ... and still no reply: past HOLD_LIMIT
    for reply in (b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"235 2.7.0 ok\r\n"):
        events += obs.feed_server(reply)
    client = [e for e in events if e.side is Side.CLIENT]
    assert [(e.kind, e.verb) for e in client[:3]] == [(Kind.COMMAND, "AUTH"), (Kind.DATA, "AUTH"), (Kind.DATA, "AUTH")]
    assert [e.raw for e in client[1:3]] == [user + b"\r\n", password + b"\r\n"]
    assert all(e.redacted for e in client[1:3])
    assert {(e.kind, e.verb) for e in client[3:]} == {(Kind.COMMAND, "NOOP")}
    assert not any(password in (e.redacted or e.raw) for e in events if e.kind is Kind.COMMAND)


def test_close_mid_data():
    obs = SmtpObserver()
    obs.feed_server(b"220 x\r\n")
    obs.feed_client(b"HELO a\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<b@c.d>\r\nDATA\r\n")
    obs.feed_server(b"250 a\r\n250 b\r\n250 c\r\n354 go\r\n")
    obs.feed_client(b"Subject: cut\r\n\r\nhalf")
    events = obs.close()
    assert len(events) == 1 and events[0].kind is Kind.DATA and events[0].incomplete


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=30))
def test_random_bytes_never_raise(chunks):
    obs = SmtpObserver()
    for from_client, data in chunks:
        events = obs.feed_client(data) if from_client else obs.feed_server(data)
        assert all(isinstance(e, Event) for e in events)
    obs.close()


def test_whole_conversation_with_starttls_core(store):
    """The core's STARTTLS output: the observer stops parsing exactly where the core switches."""
    core = SmtpServerConnection(SmtpConfig(tls_available=True), store, clock=time.time)
    obs = SmtpObserver()
    obs.feed_server(b"".join(o.data for o in core.start() if isinstance(o, Send)))
    obs.feed_client(b"EHLO x\r\nSTARTTLS\r\n")
    outs = core.receive(b"EHLO x\r\nSTARTTLS\r\n")
    assert isinstance(outs[-1], StartTLS)
    obs.feed_server(b"".join(o.data for o in outs if isinstance(o, Send)))
    assert obs.encrypted


WORDS = [b"HELO x", b"EHLO x", b"MAIL FROM:<a@b.c>", b"MAIL FROM: a@b.c", b"RCPT TO:<bob@lab.test>",
         b"RCPT TO:<no@lab.test>", b"RCPT TO:<x@else.org>", b"DATA", b"RSET", b"NOOP", b"VRFY bob", b"EXPN x",
         b"HELP", b"AUTH PLAIN", b"AUTH LOGIN", b"Ym9i", b"*", b"BOGUS", b"x", b".", b"QUIT"]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=20), st.sampled_from([0, 1, 5]))
@example(words=[b"MAIL FROM:<a@b.c>"] * 20, chunk=0)  # the 421 after too many errors answers no command
def test_observer_agrees_with_the_core_on_any_polite_session(tmp_path_factory, words, chunk):
    if b"QUIT" in words:  # nothing follows QUIT on a real connection (the server closes it)
        words = words[: words.index(b"QUIT") + 1]
    store = MaildirStore(tmp_path_factory.mktemp("m"), {"alice": "alice", "bob": "bob"}, fsync=False)
    try:
        core, observed, _ = play(store, [w + b"\r\n" for w in words], chunk)
    finally:
        store.close()
    assert facts(observed) == facts(core)
    assert [e.state for e in observed if e.kind is Kind.REPLY] == [e.state for e in core if e.kind is Kind.REPLY]


def test_message_cut_right_after_354_is_recorded_by_both(store):
    """The client closes as soon as DATA is accepted: core and observer both record an empty,
    incomplete message (found by the agreement test above)."""
    core, observed, _ = play(store, [b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n",
                                     b"DATA\r\n"])
    assert facts(observed) == facts(core)
    cut = [e for e in observed if e.kind is Kind.DATA]
    assert len(cut) == 1 and cut[0].raw == b"" and cut[0].incomplete


# --- sessions of real MTAs (issue 19): core and observer give the same notes --------------------
POSTFIX_REFUSED = [b"EHLO mta.example\r\n",
                   b"MAIL FROM:<alice@mta.example> SIZE=300 BODY=8BITMIME\r\nRCPT TO:<nosuchuser@lab.test>\r\nDATA\r\n",
                   b"RSET\r\n", b"QUIT\r\n"]
MIXED_GROUP = [b"EHLO mta.example\r\n",
               b"MAIL FROM:<alice@mta.example>\r\nRCPT TO:<nosuchuser@lab.test>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n",
               b"Subject: hi\r\n\r\nhello\r\n.\r\n", b"QUIT\r\n"]
UTF8_SESSION = [b"EHLO mta.example\r\n", "MAIL FROM:<josé@ejemplo.es> SMTPUTF8 BODY=8BITMIME\r\n".encode(),
                b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                "From: José <josé@ejemplo.es>\r\nSubject: canción\r\n\r\nniño\r\n.\r\n".encode(), b"QUIT\r\n"]
RAW_HEADER_8BITMIME = [b"EHLO mta.example\r\n", b"MAIL FROM:<alice@mta.example> BODY=8BITMIME\r\n",
                       b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n",
                       "Subject: Prueba: canción, niño y pingüino\r\n\r\nok\r\n.\r\n".encode(), b"QUIT\r\n"]


@pytest.mark.parametrize("chunk", [0, 1, 7])
@pytest.mark.parametrize("session, rules", [
    (POSTFIX_REFUSED, []),  # DATA pipelined with its refused RCPT (RFC 2920 §3.1): no mistake
    (MIXED_GROUP, []),
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<nosuchuser@lab.test>\r\n", b"DATA\r\n", b"QUIT\r\n"],
     ["data-no-recipient"]),  # DATA sent after the 550 was read: a real mistake
    ([b"EHLO x\r\n", b"MAIL FROM:<a@b.c>\r\nDATA\r\n", b"QUIT\r\n"], ["data-no-recipient"]),  # no RCPT at all
    ([b"EHLO mta.example\r\n", b"QUIT\r\n"], ["left-without-transaction"]),
    ([b"EHLO mta.example\r\n", b"STARTTLS\r\n", b"QUIT\r\n"], ["left-without-transaction"]),
    (UTF8_SESSION, []),
    (RAW_HEADER_8BITMIME, ["8bit-header-without-smtputf8"]),
    ([b"EHLO x\r\n", b"VRFY bob\r\n", b"QUIT\r\n"], []),  # came to ask about an address: no mistake
], ids=["postfix-refused", "mixed-group", "data-after-refusal", "data-without-rcpt", "greet-and-leave",
        "starttls-refused-and-leave", "smtputf8", "raw-utf8-header-8bitmime", "verify-and-leave"])
def test_real_mta_sessions_core_and_observer_agree(store, session, rules, chunk):
    core, observed, _ = play(store, session, chunk)
    for side in (Side.CLIENT, Side.SERVER):  # pipelined groups: the core interleaves, the observer cannot
        assert [f for f in facts(observed) if f[0] is side] == [f for f in facts(core) if f[0] is side]
    assert [e.state for e in observed if e.side is Side.SERVER] == [e.state for e in core if e.side is Side.SERVER]
    rule_list = lambda evs: [n.rule for e in evs for n in e.notes]  # noqa: E731
    assert rule_list(observed) == rule_list(core) == rules
