"""The log writer's queue is bounded (``background.MAX_BEHIND``): when the writer thread falls
behind (starved of the GIL by a busy event loop), the servers' thread writes the oldest events
itself, in order, so memory stays bounded and the log still gets every event, in order."""

from __future__ import annotations

from mailtrace.transcript import background
from mailtrace.transcript.background import BackgroundSink
from mailtrace.transcript.event import Event, Kind, Side
from mailtrace.transcript.recorder import MemorySink as ListSink


def test_a_writer_that_never_runs_leaves_at_most_max_behind_events_queued_and_loses_none():
    inner = ListSink()
    sink = BackgroundSink(inner, interval=3600)  # its thread's first batch would come in an hour
    count = 3 * background.MAX_BEHIND + 7
    events = [Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"NOOP %d\r\n" % n) for n in range(count)]
    for event in events:
        sink.handle(event)
        assert len(sink._queue) <= background.MAX_BEHIND
    assert inner.events == events[:len(inner.events)] and len(inner.events) >= count - background.MAX_BEHIND
    sink.close()  # the thread writes the rest
    assert inner.events == events
