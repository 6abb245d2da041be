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


class BackgroundSink:
    def __init__(self, inner, *, interval: float = INTERVAL, name: str = "mailtrace-log-writer") -> None:
        self.inner = inner
        self.interval = interval
        self.error: BaseException | None = None  # the inner sink failed (disk full...): said once
        self._queue: collections.deque[Event] = collections.deque()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def handle(self, event: Event) -> None:
        self._queue.append(event)

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
            except (OSError, ValueError) as exc:  # disk full, file gone: say it once, drop the rest
                if self.error is None:
                    self.error = exc
                    print(f"mailtrace: cannot write the log: {getattr(exc, 'strerror', None) or exc}",
                          file=sys.stderr, flush=True)
                self._queue.clear()
            if closing:
                return

    def _batch(self) -> None:
        queue = self._queue
        if not queue:
            return
        handle = self.inner.handle
        done = 0
        while queue:
            handle(queue.popleft())
            done += 1
            if done % YIELD_EVERY == 0:
                time.sleep(0)  # let the servers' thread have the GIL now and then
        flush = getattr(self.inner, "flush", None)
        if flush is not None:
            flush()
