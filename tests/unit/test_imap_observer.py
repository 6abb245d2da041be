"""ImapObserver: fed both sides of a real core session, it sees what the core recorded."""

from __future__ import annotations

import pytest

from mailtrace.protocols.base import Send
from mailtrace.protocols.imap.observer import ImapObserver
from mailtrace.transcript.event import Args, Event, Kind, Side
from test_imap_helpers import MULTI, PASSWORD, SIMPLE, make_core, make_store, run_pending


def _session(store) -> tuple[list[tuple[Side, bytes]], list[Event]]:
    """Run a core through a realistic session; return the wire chunks (both sides) and its events."""
    core = make_core(store)
    wire: list[tuple[Side, bytes]] = []
    events: list[Event] = []

    def take(outputs):
        for o in run_pending(outputs):
            if isinstance(o, Send):
                wire.append((Side.SERVER, o.data))
            elif isinstance(o, Event):
                events.append(o)

    take(core.start())
    msg = b"Subject: up\r\n\r\nloaded\r\n"
    for data in [b"a1 CAPABILITY\r\n", b"a2 LOGIN alice {%d}\r\n" % len(PASSWORD), PASSWORD.encode() + b"\r\n",
                 b"a3 SELECT INBOX\r\n", b"a4 FETCH 1:2 (UID FLAGS BODY[] BODY.PEEK[HEADER])\r\n",
                 b"a5 APPEND INBOX (\\Seen) {%d}\r\n" % len(msg), msg + b"\r\n", b"a6 UID SEARCH FROM bob\r\n",
                 b"a7 IDLE\r\n", b"DONE\r\n", b"a8 FETCH 9 FLAGS\r\n", b"a8 LOGOUT\r\n"]:
        wire.append((Side.CLIENT, data))
        take(core.receive(data))
    return wire, events


def observe(wire: list[tuple[Side, bytes]], chunk: int) -> tuple[ImapObserver, list[Event]]:
    """Feed both sides of ``wire`` to a new observer, ``chunk`` octets at a time."""
    obs = ImapObserver()
    seen: list[Event] = []
    for side, data in wire:
        feed = obs.feed_client if side is Side.CLIENT else obs.feed_server
        for i in range(0, len(data), chunk):
            seen += feed(data[i:i + chunk])
    seen += obs.close()
    return obs, seen


def _key(e: Event):
    return (e.side, e.kind, e.raw, e.tag, e.code if e.kind is Kind.REPLY else "", e.shown(), e.state, e.args,
            e.continued, e.command, e.response_code)


@pytest.mark.parametrize("chunk", [1, 5, 100_000])
def test_observer_matches_the_core(tmp_path, chunk):
    store = make_store(tmp_path)
    store.deliver("alice", SIMPLE)
    store.deliver("alice", MULTI)
    wire, core_events = _session(store)
    obs, seen = observe(wire, chunk)
    want = [_key(e) for e in core_events if e.kind is not Kind.VIOLATION]
    got = [_key(e) for e in seen]
    # both change state on the tagged completion, by the same table (spec.TRANSITIONS)
    assert got == want
    tag_reuse = [e for e in seen if any(n.rule == "tag-reuse" for n in e.notes)]
    assert [e.tag for e in tag_reuse] == ["a8"]
    assert obs.state.value == "logout"
    verbs = {e.tag: e.verb for e in seen if e.kind is Kind.REPLY and e.tag.startswith("a")}
    assert verbs["a4"] == "FETCH" and verbs["a6"] == "UID SEARCH"
    # the parsed arguments, the same for both (commandline.command_args)
    args = {e.tag: e.args for e in seen if e.kind is Kind.COMMAND and e.args is not None}
    assert args == {"a3": Args(mailbox="INBOX"), "a4": Args(sequence_set="1:2"),
                    "a5": Args(mailbox="INBOX", size=len(b"Subject: up\r\n\r\nloaded\r\n")),
                    "a8": Args(sequence_set="9")}


def test_observer_starttls_and_refused_literal():
    obs = ImapObserver()
    obs.feed_server(b"* OK hi\r\n")
    obs.feed_client(b"a1 APPEND INBOX {99999999999}\r\n")
    obs.feed_server(b"a1 NO [TOOBIG] too big\r\n")
    evs = obs.feed_client(b"a2 STARTTLS\r\n")
    assert evs[0].verb == "STARTTLS" and evs[0].kind is Kind.COMMAND
    evs = obs.feed_server(b"a2 OK Begin TLS\r\n\x16\x03\x01rest")
    assert obs.encrypted and evs[-1].kind is Kind.TLS and evs[-1].size == 7
    assert obs.feed_client(b"\x16\x03\x01hello")[0].kind is Kind.TLS
    assert obs.feed_client(b"more") == []
    evs = obs.tls_started()
    assert evs[0].kind is Kind.TLS and not obs.encrypted
    assert obs.feed_client(b"a3 CAPABILITY\r\n")[0].verb == "CAPABILITY"


def test_observer_flags_violations_and_cut_literals():
    obs = ImapObserver()
    obs.feed_server(b"* OK hi\r\n")
    evs = obs.feed_client(b"a1 SELECT INBOX\r\n")
    assert evs[0].notes[0].rule == "wrong-state"
    obs.feed_server(b"a1 BAD not now\r\n")
    evs = obs.feed_client(b"a2 LOGIN {5+}\r\nalicexx pw\r\n")
    assert any(n.rule == "literal-length-mismatch" for e in evs for n in e.notes)
    evs = obs.feed_client(b'a3 LOGIN bob pa"ss\n')
    assert {n.rule for n in evs[0].notes} == {"bare-lf", "unquoted-specials"}
    obs.feed_client(b"a4 APPEND INBOX {10+}\r\nabc")
    evs = obs.close()
    assert evs[0].kind is Kind.LITERAL and evs[0].notes[0].rule == "literal-length-mismatch"


def test_observer_flags_commands_pipelined_after_starttls():
    obs = ImapObserver()
    obs.feed_server(b"* OK hi\r\n")
    evs = obs.feed_client(b"a1 STARTTLS\r\na2 LOGIN bob bob\r\n")
    assert [n.rule for n in evs[1].notes] == ["starttls-injection"]
    obs.feed_server(b"a1 BAD no TLS here\r\n")
    assert obs.feed_client(b"a3 NOOP\r\n")[0].notes == ()


def test_observer_flags_data_after_logout_and_preauth_state():
    obs = ImapObserver()
    obs.feed_server(b"* PREAUTH welcome back\r\n")
    assert obs.state.value == "authenticated"
    obs.feed_client(b"a1 LOGOUT\r\n")
    obs.feed_server(b"* BYE bye\r\na1 OK LOGOUT completed\r\n")
    evs = obs.feed_client(b"a2 NOOP\r\n")
    assert obs.state.value == "logout" and evs[0].notes[0].rule == "after-logout"


# -- the same random sessions to the core and to the observer: the same events ---------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from mailtrace.protocols.base import Close, Pending  # noqa: E402

LIT = b"Subject: x\r\n\r\nbody\n{3}\r\nmore\r\n"  # LF and a fake announcement inside
# Each command: the client's writes; after a write that announces a synchronizing literal the
# client goes on only if the server sent "+" (RFC 3501 §7.5).
STEPS = [
    [b"CAPABILITY"], [b"NOOP"], [b"LOGIN alice wrong"], [b'LOGIN alice "pa ss\\"w\\\\rd"'],
    [b"LOGIN alice {%d+}\r\n%s" % (len(PASSWORD), PASSWORD.encode())],
    [b"LOGIN {5}", b"alice {%d}" % len(PASSWORD), PASSWORD.encode()],
    [b"AUTHENTICATE PLAIN AGFsaWNlAHdyb25n"], [b"SELECT INBOX"], [b"EXAMINE INBOX"], [b"SELECT nosuch"],
    [b"SELECT"], [b"CLOSE"], [b"UNSELECT"], [b"CHECK"], [b"EXPUNGE"], [b"FETCH 1 (FLAGS BODY.PEEK[])"],
    [b"UID FETCH 1:* (UID RFC822.SIZE)"], [b'COPY 2,1:* "Ar chive"'], [b"UID MOVE 1 {7}", b"Archive"],
    [b"STATUS {5}", b"inbox (MESSAGES)"], [b"RENAME Archive Old"], [b"SELECT \"INBOX"], [b"FETCH 1:* BODY[]"], [b"STORE 1 +FLAGS (\\Deleted)"],
    [b"SEARCH ALL"], [b"COPY 1 INBOX"], [b"MOVE 1 Archive"], [b"CREATE Archive"], [b"LIST \"\" *"],
    [b"STATUS INBOX (MESSAGES UIDNEXT)"], [b"APPEND INBOX {%d}" % len(LIT), LIT], [b"APPEND INBOX {%d+}\r\n%s" % (len(LIT), LIT)],
    [b"APPEND INBOX (\\Seen) {1}", b"x"],
    [b"ENABLE UTF8=ACCEPT"], [b"NAMESPACE"], [b"FOO bar"], [b"UID"], [b"SEARCH ((("], [b"LOGOUT"],
]
RAW = [b"* NOOP", b"a+b LOGIN x y", b"", b"   ", b"x" * 300]  # lines without a valid tag


@st.composite
def sessions(draw):
    writes = []
    for i in range(draw(st.integers(1, 14))):
        if draw(st.integers(0, 9)) == 0:
            writes.append([draw(st.sampled_from(RAW))])
            continue
        tag = draw(st.sampled_from([b"a%d" % i, b"t"]))  # "t": tag reuse
        parts = list(draw(st.sampled_from(STEPS)))
        parts[0] = tag + b" " + parts[0]
        writes.append(parts)
    ending = draw(st.sampled_from([b"\r\n", b"\n"]))
    return writes, ending


def _play(store, writes, ending, core_chunk):
    core = make_core(store)
    wire: list[tuple[Side, bytes]] = []
    events: list[Event] = []
    closed = False

    def take(outputs):
        nonlocal closed
        sent = b""
        for o in outputs:
            if isinstance(o, Pending):
                sent += take(o.resume(o.job()))
            elif isinstance(o, Send):
                wire.append((Side.SERVER, o.data))
                sent += o.data
            elif isinstance(o, Event):
                events.append(o)
            elif isinstance(o, Close):
                closed = True
        return sent

    take(core.start())
    for parts in writes:
        for k, part in enumerate(parts):
            data = part if part.endswith(b"\n") and k else part + ending
            if k and part is parts[-1] and not part.endswith(b"\n"):
                data = part + ending
            wire.append((Side.CLIENT, data))
            answer = b""
            for i in range(0, len(data), core_chunk):
                answer += take(core.receive(data[i:i + core_chunk]))
            if closed or (k + 1 < len(parts) and data.rstrip().endswith(b"}") and not answer.startswith(b"+")):
                break  # a refused synchronizing literal is not sent
        if closed:
            break
    take(core.eof())
    return wire, events


def _facts(e: Event):
    return (e.side, e.kind, e.raw, e.tag, e.verb if e.kind is not Kind.REPLY or e.tag != "*" else "",
            e.code if e.kind is Kind.REPLY else "", e.shown(), e.state, tuple(n.rule for n in e.notes), e.args,
            e.continued, e.command, e.response_code)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session=sessions(), core_chunk=st.sampled_from([1, 3, 10_000]), obs_chunk=st.sampled_from([1, 7, 10_000]))
def test_random_sessions_give_the_observer_the_core_events(tmp_path_factory, session, core_chunk, obs_chunk):
    store = make_store(tmp_path_factory.mktemp("mail"))
    store.deliver("alice", SIMPLE)
    store.deliver("alice", MULTI)
    writes, ending = session
    wire, core_events = _play(store, writes, ending, core_chunk)
    obs, seen = observe(wire, obs_chunk)
    assert [_facts(e) for e in seen] == [_facts(e) for e in core_events if e.kind is not Kind.VIOLATION]
    assert obs.state.value == next(e.state for e in reversed(core_events) if e.state)


def _huge_literal(greeting: bytes, side: Side, announce: bytes, size: int, end: bytes) -> list[Event]:
    """An observer's events for a literal of ``size`` octets sent by ``side`` in 64 KiB writes."""
    obs = ImapObserver()
    obs.feed_server(greeting)
    feed = obs.feed_client if side is Side.CLIENT else obs.feed_server
    evs = feed(announce)
    for _ in range(size // 65536):
        evs += feed(b"m" * 65536)
    return evs + feed(end)


def test_observer_keeps_a_bounded_part_of_a_huge_literal():
    """A proxy watching a FETCH of a large message keeps at most MAX_OBSERVED_LITERAL octets
    of it (the event's size says how many there were) and frames what follows as usual."""
    from mailtrace.protocols.imap.spec import MAX_OBSERVED_LITERAL

    size = 3 * MAX_OBSERVED_LITERAL
    evs = _huge_literal(b"* OK hi\r\n", Side.SERVER, b"* 1 FETCH (BODY[] {%d}\r\n" % size, size,
                        b")\r\na1 OK FETCH completed\r\n")
    literal = next(e for e in evs if e.kind is Kind.LITERAL)
    assert len(literal.raw) == MAX_OBSERVED_LITERAL and literal.size == size
    assert [e.raw for e in evs if e.kind is Kind.REPLY][-2:] == [b")\r\n", b"a1 OK FETCH completed\r\n"]


def test_observer_names_the_mailbox_and_size_of_an_append_it_kept_in_part():
    """An APPEND too large to keep whole: the observer's Args still say where and how much."""
    from mailtrace.protocols.imap.spec import MAX_OBSERVED_LITERAL

    size = 2 * MAX_OBSERVED_LITERAL
    evs = _huge_literal(b"* PREAUTH hi\r\n", Side.CLIENT, b"a1 APPEND Sent (\\Seen) {%d+}\r\n" % size, size, b"\r\n")
    last = [e for e in evs if e.kind is Kind.COMMAND][-1]
    assert last.continued and last.args == Args(mailbox="Sent", size=size)


def test_observer_reads_select_bad_and_no_as_the_table_says():
    """The observer moves along spec.TRANSITIONS as the core does: BAD to SELECT keeps the
    selected state (the command was not run), NO leaves it (RFC 3501 §6.3.1)."""
    obs = ImapObserver()
    obs.feed_server(b"* OK hi\r\n")
    for client, server in ((b"a1 LOGIN alice alice\r\n", b"a1 OK done\r\n"),
                           (b"a2 SELECT INBOX\r\n", b"a2 OK [READ-WRITE] done\r\n")):
        obs.feed_client(client)
        evs = obs.feed_server(server)
    assert obs.state.value == "selected" and evs[-1].response_code == "READ-WRITE"
    obs.feed_client(b"a3 SELECT\r\n")
    obs.feed_server(b"a3 BAD missing mailbox\r\n")
    assert obs.state.value == "selected"
    obs.feed_client(b"a4 SELECT nosuch\r\n")
    obs.feed_server(b"a4 NO no such mailbox\r\n")
    assert obs.state.value == "authenticated"
