"""The event path's fast forms say exactly what the plain ones say.

``jsonl.event_line`` writes a JSONL v2 line directly (the log writer's hot path); it must be
byte-identical to encoding ``event_to_dict`` with the format's encoder, for every kind of event
and every fact.  The recorder stamps a new event in place and copies one already stamped: no
sink ever sees an event change after it was dispatched.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.transcript.event import (Args, Clause, Event, Kind, MessageRef, Note, Peer, Reason, Side, Tls)
from mailtrace.transcript.jsonl import event_line, event_to_dict
from mailtrace.transcript.links import Action
from mailtrace.transcript.recorder import MemorySink, Recorder

ENCODER = json.JSONEncoder(ensure_ascii=False)  # the format's encoder (jsonl.py)
text = st.text(max_size=12)  # any code point, surrogates and control characters included
maybe = lambda strategy: st.none() | strategy  # noqa: E731
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**12)

args = st.builds(Args, reverse_path=maybe(text), forward_path=maybe(text),
                 params=st.lists(st.tuples(text, maybe(text)), max_size=2).map(tuple),
                 message=maybe(st.integers(0, 99)), lines=maybe(st.integers(0, 99)), mailbox=text, sequence_set=text,
                 size=maybe(st.integers(0, 10**9)))
events = st.builds(
    Event,
    side=st.sampled_from(Side), kind=st.sampled_from(Kind),
    raw=st.binary(max_size=40) | text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    protocol=text, verb=text, code=text, tag=text, state=text,
    notes=st.lists(st.builds(Note, text, text), max_size=2).map(tuple),
    size=st.integers(-1, 10**9), redacted=maybe(st.binary(max_size=10)),
    args=maybe(args), response_code=text, user=text,
    messages=st.lists(st.builds(MessageRef, st.sampled_from(Action), text, text, st.integers(0, 10**9), text),
                      max_size=2).map(tuple),
    continued=st.booleans(), command=text, spooled=st.booleans(), incomplete=text, pipelined=st.booleans(),
    arrived=text, partial=text, scripted=st.booleans(), unsolicited=st.booleans(),
    peer=maybe(st.builds(Peer, client=text, server=text, mode=text, started=numbers)),
    reason=maybe(st.builds(Reason, text=text, clauses=st.lists(
        st.builds(Clause, text, st.lists(st.tuples(text, text), max_size=2).map(tuple)), max_size=2).map(tuple))),
    missing=st.integers(0, 10**9),
    tls=maybe(st.builds(Tls, how=text, seen=st.booleans(), intercepted=maybe(st.booleans()), mark=text, detail=text)),
    session=text, seq=st.integers(0, 10**9), t=numbers,
)


@settings(max_examples=300, deadline=None)
@given(event=events, show_secrets=st.booleans())
def test_event_line_is_byte_identical_to_encoding_event_to_dict(event, show_secrets):
    assert event_line(event, show_secrets) == ENCODER.encode(event_to_dict(event, show_secrets))


def test_the_recorder_stamps_a_new_event_in_place_and_copies_one_already_recorded():
    first, second = MemorySink(), MemorySink()
    recorder = Recorder([first])
    one = recorder.session("smtp", session_id="smtp-1")
    event = Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"NOOP\r\n", verb="NOOP")
    stamped = one.record(event)
    assert stamped is event and (event.session, event.seq, event.protocol) == ("smtp-1", 1, "smtp")

    recorder.add_sink(second)  # added later: gets the events from now on
    other = recorder.session("pop3", session_id="pop3-2")
    again = other.record(event)  # the same object recorded a second time: a copy, the first unchanged
    assert again is not event
    assert (again.session, again.seq, again.protocol) == ("pop3-2", 1, "smtp")
    assert (event.session, event.seq) == ("smtp-1", 1)
    assert [e.session for e in first.events if e.kind is Kind.COMMAND] == ["smtp-1", "pop3-2"]
    assert [e.session for e in second.events] == ["pop3-2", "pop3-2"]  # pop3-2's OPEN, then the copy

    recorder.remove_sink(first)
    other.close()
    assert first.events[-1].kind is Kind.COMMAND and second.events[-1].kind is Kind.CLOSE


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(events, max_size=150), show_secrets=st.booleans())
def test_the_log_writer_batches_write_what_one_event_at_a_time_writes(batch, show_secrets):
    """``BackgroundSink`` hands its queue to ``JsonlSink.handle_many`` in runs: the file is the
    same, line for line, as with one ``handle`` per event."""
    import io

    from mailtrace.transcript.background import BackgroundSink
    from mailtrace.transcript.jsonl import JsonlSink

    one_by_one, batched = io.StringIO(), io.StringIO()
    plain = JsonlSink(one_by_one, show_secrets=show_secrets, autoflush=False)
    for event in batch:
        plain.handle(event)
    background = BackgroundSink(JsonlSink(batched, show_secrets=show_secrets, autoflush=False), interval=3600)
    for event in batch:
        background.handle(event)
    background.close()  # writes what is queued, in the thread's runs of events
    # (the first line is the file's header, which carries its creation time)
    assert batched.getvalue().split("\n", 1)[1] == one_by_one.getvalue().split("\n", 1)[1]


# Message bodies (RETR, FETCH, DATA: longer than 256 octets) take a faster path in event_line;
# pieces that need no escaping (text, CRLF, UTF-8) and pieces that do (quotes, controls, bytes
# that are not UTF-8), so that both paths are drawn.
body_pieces = st.sampled_from([b"\r\n", b"The quick brown fox. ", b"..", "ñandú ".encode(), b'"', b"\\", b"\t",
                               b"\x00", b"\x7f", b"\xff", b"\n", b"\r"])
plain_pieces = st.sampled_from([b"\r\n", b"The quick brown fox. ", b"..", "ñandú ".encode(), b"\x7f"])
bodies = (st.lists(plain_pieces, min_size=30, max_size=300) | st.lists(body_pieces, min_size=30, max_size=300)).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(raw=bodies)
def test_a_message_body_line_is_byte_identical_to_encoding_event_to_dict(raw):
    event = Event(side=Side.SERVER, kind=Kind.DATA, raw=raw, verb="RETR", protocol="pop3")
    event.stamp("pop3-1", 7, 0.5, "pop3")
    assert event_line(event) == ENCODER.encode(event_to_dict(event))
