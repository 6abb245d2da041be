"""The POP3 observer frames both sides like the server core does, however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.protocols.base import send_all, settle
from mailtrace.protocols.pop3 import Pop3Config, Pop3Observer, Pop3ServerConnection, apop_digest
from mailtrace.transcript.event import Event
from mailtrace.transcript.event import Kind, Side
from test_pop3_fakes import FakeStore


def receive(core, data: bytes) -> list:
    """The core's outputs for ``data``, its store jobs (``Pending``) run at once as a shell would."""
    return settle(core.receive(data))


STAMP = "<1.2@lab.test>"
MSG = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"


def record_session(lines: list[bytes], tls: bool = False):
    """Run ``lines`` through the real core; return (client bytes, server bytes, core events)."""
    store = FakeStore()
    store.deliver("alice", MSG)
    store.deliver("alice", b"Subject: 2\r\n\r\nx\r\n")
    core = Pop3ServerConnection(store, STAMP, Pop3Config(tls_available=tls))
    out = core.start()
    server = send_all(out)
    events = [o for o in out if hasattr(o, "kind")]
    client = b""
    for line in lines:
        client += line
        out = receive(core, line)
        server += send_all(out)
        events += [o for o in out if hasattr(o, "kind")]
    return client, server, events


SCRIPT = [b"CAPA\r\n", b"USER alice\r\n", b"PASS secret\r\n", b"STAT\r\n", b"LIST\r\n", b"LIST 1\r\n",
          b"UIDL\r\n", b"RETR 1\r\n", b"TOP 2 0\r\n", b"DELE 1\r\n", b"RETR 1\r\n", b"NOOP\r\n", b"QUIT\r\n"]


def observe(client: bytes, server: bytes, chunk: int) -> list:
    """Feed a turn-by-turn conversation: the server's reply to each command arrives before the next."""
    obs = Pop3Observer()
    events = []
    for i in range(0, len(server), chunk):
        events += obs.feed_server(server[i: i + chunk])
    return obs, events


def interleave(obs, client_lines, server: bytes, chunk: int):
    events = []
    # greeting first, then for simplicity all commands (pipelined), then all server bytes
    greeting_end = server.index(b"\r\n") + 2
    events += obs.feed_server(server[:greeting_end])
    data = b"".join(client_lines)
    for i in range(0, len(data), chunk):
        events += obs.feed_client(data[i: i + chunk])
    rest = server[greeting_end:]
    for i in range(0, len(rest), chunk):
        events += obs.feed_server(rest[i: i + chunk])
    return events + obs.close()


def key(e):
    return (e.side, e.kind, e.verb, e.code, e.raw, e.state)


@pytest.mark.parametrize("chunk", [1, 3, 64, 100_000])
def test_observer_matches_the_core(chunk):
    client, server, core_events = record_session(SCRIPT)
    obs = Pop3Observer()
    seen = interleave(obs, SCRIPT, server, chunk)
    by_side = lambda evs, side: [key(e) for e in evs if e.side is side]  # noqa: E731
    assert by_side(seen, Side.SERVER) == by_side(core_events, Side.SERVER)
    # the client events' state is the state the observer knew when the command was sent;
    # with everything pipelined that is AUTHORIZATION, so compare without it
    strip = lambda evs: [k[:5] for k in by_side(evs, Side.CLIENT)]  # noqa: E731
    assert strip(seen) == strip(core_events)
    data = [e for e in seen if e.kind is Kind.DATA]
    assert [e.verb for e in data] == ["CAPA", "LIST", "UIDL", "RETR", "TOP"]
    assert data[3].raw == b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n"
    assert obs.state.value == "UPDATE" and obs.ended


def test_turn_by_turn_states_and_redaction():
    obs = Pop3Observer()
    obs.feed_server(b"+OK hi <1.2@x>\r\n")
    (user,) = obs.feed_client(b"USER alice\r\n")
    obs.feed_server(b"+OK\r\n")
    (pw,) = obs.feed_client(b"PASS s3cret\r\n")
    assert pw.redacted == b"PASS ********\r\n" and pw.state == "AUTHORIZATION"
    (ok,) = obs.feed_server(b"+OK logged in\r\n")
    assert ok.state == "TRANSACTION" and ok.verb == "PASS"
    (cmd,) = obs.feed_client(b"USER bob\r\n")
    assert [n.rule for n in cmd.notes] == ["wrong-state"]
    obs.feed_server(b"-ERR no\r\n")
    obs.feed_client(b"LIST 1\r\n")
    (single,) = obs.feed_server(b"+OK 1 120\r\n")  # LIST with an argument: single line
    assert single.kind is Kind.REPLY
    obs.feed_client(b"LIST\r\n")
    events = obs.feed_server(b"+OK 1 messages\r\n1 120\r\n.\r\n")
    assert [e.kind for e in events] == [Kind.REPLY, Kind.DATA]
    obs.feed_client(b"RETR 7\r\n")
    (err,) = obs.feed_server(b"-ERR no such message\r\n")  # -ERR: no body follows
    assert err.code == "-ERR"
    events = obs.close()
    assert [n.rule for e in events for n in e.notes] == ["no-quit"]


def test_violations_seen_by_the_observer():
    obs = Pop3Observer()
    (early,) = obs.feed_client(b"USER a\n")
    assert {n.rule for n in early.notes} == {"before-greeting", "bare-lf"}
    obs.feed_server(b"+OK hi\r\n")  # the greeting
    obs.feed_server(b"+OK\r\n")  # answers USER
    (bogus,) = obs.feed_client(b"XTND XMIT\r\n")
    assert [n.rule for n in bogus.notes] == ["unknown-command"]
    (bad,) = obs.feed_server(b"+ok whatever\r\n")
    assert [n.rule for n in bad.notes] == ["bad-status"]
    (badarg,) = obs.feed_client(b"RETR x\r\n")
    assert [n.rule for n in badarg.notes] == ["wrong-state"]  # as the core: refused before its arguments are read
    obs.feed_server(b"-ERR no\r\n")
    (badarg,) = obs.feed_client(b"USER a b\r\n")
    assert [n.rule for n in badarg.notes] == ["bad-argument"]
    obs.feed_server(b"-ERR " + b"x" * 600 + b"\r\n")
    obs.feed_client(b"QUIT\r\n")
    obs.feed_server(b"+OK bye\r\n")
    (after,) = obs.feed_client(b"NOOP\r\n")
    assert [n.rule for n in after.notes] == ["after-quit"]


def test_stls_encrypted_then_intercepted():
    client, server, _ = record_session([b"CAPA\r\n", b"STLS\r\n"], tls=True)
    obs = Pop3Observer()
    obs.feed_server(server[: server.index(b"\r\n") + 2])
    obs.feed_client(b"CAPA\r\n")
    (stls,) = obs.feed_client(b"STLS\r\n")
    assert stls.verb == "STLS"
    events = obs.feed_server(server[server.index(b"\r\n") + 2:] + b"\x16\x03\x01TLS bytes")
    assert obs.encrypted
    assert [e.kind for e in events] == [Kind.REPLY, Kind.DATA, Kind.REPLY, Kind.TLS]
    assert events[-1].size == 12
    assert obs.feed_client(b"\x16\x03\x01 client hello") != []  # one TLS event per side
    assert obs.feed_client(b"more") == []
    (tls,) = obs.tls_started()
    assert tls.kind is Kind.TLS and not obs.encrypted
    obs.feed_client(b"CAPA\r\n")
    events = obs.feed_server(b"+OK\r\nUSER\r\n.\r\n")
    assert [e.kind for e in events] == [Kind.REPLY, Kind.DATA]


def test_sasl_auth_plain_with_continuation():
    obs = Pop3Observer()
    obs.feed_server(b"+OK Dovecot ready.\r\n")
    (auth,) = obs.feed_client(b"AUTH PLAIN\r\n")
    assert auth.verb == "AUTH" and not auth.notes
    (cont,) = obs.feed_server(b"+ \r\n")
    assert cont.code == "+" and cont.kind is Kind.REPLY
    (secret,) = obs.feed_client(b"AGFsaWNlAHB3\r\n")
    assert secret.kind is Kind.DATA and secret.verb == "AUTH" and secret.shown() == b"********\r\n"
    (ok,) = obs.feed_server(b"+OK Logged in.\r\n")
    assert ok.verb == "AUTH" and ok.state == "TRANSACTION"
    (stat,) = obs.feed_client(b"STAT\r\n")
    assert stat.verb == "STAT" and not stat.notes


def test_sasl_initial_response_is_redacted():
    obs = Pop3Observer()
    obs.feed_server(b"+OK hi\r\n")
    (auth,) = obs.feed_client(b"AUTH PLAIN AGFsaWNlAHB3\r\n")
    assert auth.shown() == b"AUTH PLAIN ********\r\n"
    (err,) = obs.feed_server(b"-ERR [AUTH] Authentication failed.\r\n")
    assert err.response_code == "AUTH" and obs.state.value == "AUTHORIZATION"


def test_pipelined_after_stls_is_flagged():
    obs = Pop3Observer()
    obs.feed_server(b"+OK hi\r\n")
    events = obs.feed_client(b"STLS\r\nUSER evil\r\n")
    assert [n.rule for n in events[1].notes] == ["after-stls"]


def test_close_flushes_a_cut_response():
    obs = Pop3Observer()
    obs.feed_server(b"+OK hi\r\n")
    obs.feed_client(b"USER a\r\nPASS b\r\nRETR 1\r\n")
    obs.feed_server(b"+OK\r\n+OK in\r\n+OK 10 octets\r\nSubject: cut")
    events = obs.close()
    assert events[0].kind is Kind.DATA and events[0].raw == b"Subject: cut"
    assert events[0].notes[0].rule == "incomplete-response"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=12))
def test_random_bytes_never_raise(chunks):
    obs = Pop3Observer()
    for from_client, data in chunks:
        (obs.feed_client if from_client else obs.feed_server)(data)
    obs.close()


#: Valid and invalid client lines: every command, wrong states, bad arguments, unknown words,
#: lower case, a bare LF, an over-long line, secrets (PASS, APOP, a password typed after USER).
VOCABULARY = [b"USER alice", b"user alice", b"USER alice secret", b"PASS secret", b"PASS wrong", b"PASS",
              b"APOP alice " + apop_digest(STAMP, "secret").encode(), b"APOP alice 0123", b"CAPA", b"STAT",
              b"STAT 1", b"LIST", b"LIST 1", b"LIST 9", b"LIST x", b"UIDL", b"UIDL 2", b"RETR 1", b"RETR 2",
              b"RETR x", b"RETR", b"TOP 1 0", b"TOP 2 1", b"TOP 2", b"DELE 1", b"DELE 1  ", b"RSET", b"NOOP",
              b"UTF8", b"STLS", b"BOGUS", b"", b"STAT\n", b"NOOP " + b"x" * 300, b"AGFsaWNlAHNlY3JldA==",
              b"QUIT", b"QUIT now"]


def facts(events) -> list[tuple]:
    """Everything an event says but the facts only the lab server can know (``info``: who
    logged in, which messages a reply reports on)."""
    return [(e.side, e.kind, e.raw, e.size, e.verb, e.code, e.state, e.notes, e.redacted, e.args) for e in events]


def play(script: list[bytes], cuts: list[int], pipelined: bool = False):
    """The same session through a real core and, as both sides' bytes cut at ``cuts``, through
    an observer: (core events, observer events).  Turn by turn, the server's answer to each
    line reaches the observer before the next line; ``pipelined``: all lines first."""
    store = FakeStore()
    store.deliver("alice", MSG)
    store.deliver("alice", b"Subject: 2\r\n\r\n.\r\nx\r\n")
    core = Pop3ServerConnection(store, STAMP, Pop3Config(max_bad_commands=1000, tls_available=False))
    obs = Pop3Observer()
    core_events, seen = [], []

    def to_observer(feed, data: bytes) -> None:
        at = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
            seen.extend(feed(data[at:cut]))
            at = cut

    def run(outputs) -> bytes:
        outputs = settle(outputs)
        core_events.extend(o for o in outputs if isinstance(o, Event))
        return send_all(outputs)

    to_observer(obs.feed_server, run(core.start()))
    replies = b""
    for line in script:
        if core.closed:  # nothing follows the end of the session on a real connection
            break
        raw = line if line.endswith(b"\n") else line + b"\r\n"
        to_observer(obs.feed_client, raw)
        if pipelined:
            replies += run(core.receive(raw))
        else:
            to_observer(obs.feed_server, run(core.receive(raw)))
    to_observer(obs.feed_server, replies)
    run(core.eof())
    seen.extend(obs.close())
    return core_events, seen


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=16), st.lists(st.integers(0, 2000), max_size=6))
def test_observer_and_core_give_identical_events(script, cuts):
    """Issue #10: the observer is the spec applied to both sides, so on any session -- valid or
    not, however the bytes are cut -- it says exactly what the core says (notes, state,
    redaction included)."""
    core_events, seen = play(script, cuts)
    assert facts(seen) == facts(core_events)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=16), st.lists(st.integers(0, 2000), max_size=6))
def test_pipelined_sessions_agree_on_every_server_event(script, cuts):
    """All lines sent before any answer (RFC 2449 §6.6): the observer pairs each response with
    its command and follows the state as the core changes it; the client's lines are read
    alike but judged (state) when the server reaches them."""
    core_events, seen = play(script, cuts, pipelined=True)
    server = lambda evs: [f for f in facts(evs) if f[0] is Side.SERVER]  # noqa: E731
    assert server(seen) == server(core_events)
    client = lambda evs: [(e.raw, e.verb, e.redacted) for e in evs if e.kind is Kind.COMMAND]  # noqa: E731
    assert client(seen) == client(core_events)
