"""A sink run by a thread of its own, so that writing a log never holds up a server.

``BackgroundSink(JsonlSink(path))``: the servers' event loop only queues each event
(``handle``); a thread hands the queued events to the inner sink in batches, in order, and
flushes it after each batch, so ``tail -f`` still sees every conversation a moment later.
``close()`` waits until every queued event is written: the log is complete when the lab stops.
"""

from __future__ import annotations

import collections
import sys
import threading
import time

from mailtrace.transcript.event import Event

INTERVAL = 0.05  # seconds between two batches
YIELD_EVERY = 64  # events written between two offers of the GIL to the servers' thread
# Backpressure: when this many events wait, the servers' thread writes the oldest ones itself
# (in order, under the same lock) before going on.  A busy event loop can otherwise starve
# the writer of the GIL and the queue grows without bound (100 IMAP clients on a loaded
# machine: 370 MB in 8 s); so the log never lags more than this, and a flood slows down instead.
MAX_BEHIND = 5_000


class BackgroundSink:
    def __init__(self, inner, *, interval: float = INTERVAL, name: str = "mailtrace-log-writer") -> None:
        self.inner = inner
        self.interval = interval
        self.error: BaseException | None = None  # the inner sink failed (disk full...): said once
        self._queue: collections.deque[Event] = collections.deque()
        self._writing = threading.Lock()  # taken to pop and write an event (either thread)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def handle(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if len(queue) > MAX_BEHIND and self.error is None:
            try:
                with self._writing:
                    handle = self.inner.handle
                    while len(queue) > MAX_BEHIND // 2:
                        handle(queue.popleft())
            except (OSError, ValueError) as exc:
                self._failed(exc)

    def flush(self) -> None:
        """Nothing to do here: the thread flushes after every batch."""

    def close(self) -> None:
        """Write what is queued, then close the inner sink."""
        self._closing.set()
        self._thread.join()
        self.inner.close()

    def _run(self) -> None:
        while True:
            closing = self._closing.wait(self.interval)
            try:
                self._batch()
            except (OSError, ValueError) as exc:
                self._failed(exc)
            if closing:
                return

    def _failed(self, exc: BaseException) -> None:
        """Disk full, file gone: say it once, drop the rest."""
        if self.error is None:
            self.error = exc
            print(f"mailtrace: cannot write the log: {getattr(exc, 'strerror', None) or exc}",
                  file=sys.stderr, flush=True)
        self._queue.clear()

    def _batch(self) -> None:
        queue = self._queue
        if not queue:
            return
        inner = self.inner
        handle_many = getattr(inner, "handle_many", None)  # one write for a run of events (JsonlSink)
        handle = inner.handle
        popleft = queue.popleft
        while queue:
            with self._writing:  # (the servers' thread may have written some meanwhile: it only appends else)
                events = [popleft() for _ in range(min(len(queue), YIELD_EVERY))]
                if handle_many is not None:
                    handle_many(events)
                else:
                    for event in events:
                        handle(event)
            time.sleep(0)  # let the servers' thread have the GIL now and then
        flush = getattr(inner, "flush", None)
        if flush is not None:
            with self._writing:
                flush()
