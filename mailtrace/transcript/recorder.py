"""The recorder: stamps events with session, order and time and hands them to sinks.

A sink is anything with ``handle(event)`` and ``close()``: the live terminal view, a JSON
Lines file, a plain-text file, the grader's in-memory list, a pcap writer.  Servers, the
proxy and pcap import all record through this one class, so every exporter works on all
of them.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Iterable, Mapping, Protocol

from mailtrace.transcript.event import Event, Kind, Note, Peer, Reason, Side, facts_from_info


class Sink(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps every event in a list (tests, the grader, exporters run after the fact)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def session(self, session_id: str) -> list[Event]:
        return [e for e in self.events if e.session == session_id]


class Recorder:
    """Fans events out to sinks. Thread-safe: the grader records from threads."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)
        self._handlers = tuple(s.handle for s in self.sinks)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self.sinks.append(sink)
            self._handlers = tuple(s.handle for s in self.sinks)

    def session(
        self,
        protocol: str,
        *,
        client: str = "",
        server: str = "",
        session_id: str | None = None,
        mode: str = "lab",
        started: float | None = None,
    ) -> "SessionRecorder":
        """Open a session and record its ``open`` event."""
        sid = session_id or self.new_session_id(protocol)
        return SessionRecorder(self, sid, protocol, client=client, server=server, mode=mode, started=started)

    def new_session_id(self, protocol: str) -> str:
        """The next session id ("smtp-7"), for a session recorded elsewhere (a lab worker)."""
        return f"{protocol}-{next(self._counter)}"

    def dispatch_many(self, events: Iterable[Event]) -> None:
        """Hand events already stamped (by a lab worker's recorder) to the sinks, in order."""
        with self._lock:
            handlers = self._handlers
            for event in events:
                for handle in handlers:
                    handle(event)

    def remove_sink(self, sink: Sink) -> None:
        """Stop sending events to ``sink`` (the lab drops its live view when stopping)."""
        with self._lock:
            if sink in self.sinks:
                self.sinks.remove(sink)
                self._handlers = tuple(s.handle for s in self.sinks)

    def dispatch(self, event: Event) -> None:
        # The sinks' bound ``handle`` methods, looked up once per change of the sinks rather
        # than once per event.
        with self._lock:
            for handle in self._handlers:
                handle(event)

    def flush(self) -> None:
        """Flush the sinks that buffer (files opened with ``autoflush=False``)."""
        with self._lock:
            for sink in self.sinks:
                flush = getattr(sink, "flush", None)
                if flush is not None:
                    flush()

    def close(self) -> None:
        with self._lock:
            for sink in self.sinks:
                sink.close()


class SessionRecorder:
    """Records the events of one connection: stamps seq and time, fills in the protocol."""

    def __init__(
        self,
        recorder: Recorder,
        session_id: str,
        protocol: str,
        *,
        client: str = "",
        server: str = "",
        mode: str = "lab",
        started: float | None = None,
        clock=time.monotonic,
    ) -> None:
        self.recorder = recorder
        self.id = session_id
        self.protocol = protocol
        self.closed = False
        self._clock = clock
        self._t0 = clock()
        self._seq = itertools.count()
        wall = started if started is not None else time.time()
        self.record(Event(side=Side.NONE, kind=Kind.OPEN, peer=Peer(client=client, server=server, mode=mode, started=wall)))

    def record(self, event: Event, t: float | None = None) -> Event:
        """Stamp and dispatch one event; ``t`` overrides the clock (pcap import).

        A new event (no session yet: what the cores return) is stamped in place; one already
        stamped (recorded before, read from a file) is copied, so no sink's event ever changes."""
        if t is None:
            t = self._clock() - self._t0
        if event.session:
            event = event.stamped(self.id, next(self._seq), t, self.protocol)
        else:
            event.stamp(self.id, next(self._seq), t, self.protocol)
        self.recorder.dispatch(event)
        return event

    def violation(self, rule: str, detail: str = "", side: Side = Side.CLIENT, state: str = "") -> Event:
        return self.record(Event(side=side, kind=Kind.VIOLATION, state=state, notes=(Note(rule, detail),)))

    def close(self, side: Side = Side.NONE, reason: str | Reason | Mapping[str, str] = "",
              t: float | None = None) -> None:
        """Record the ``close`` event once; later calls do nothing.  ``reason`` is free text or,
        to be shown in the reader's language, ``knowledge.because(KEY, ...)``."""
        if self.closed:
            return
        self.closed = True
        if isinstance(reason, Mapping):
            reason = facts_from_info(reason).get("reason")
        elif isinstance(reason, str):
            reason = Reason(text=reason) if reason else None
        self.record(Event(side=side, kind=Kind.CLOSE, reason=reason), t=t)

