"""The live view: the terminal transcript, drawn by its own thread so it never slows a server.

The servers' event loop only appends each event to a queue (``handle``); a thread takes the
queue in batches (every ``INTERVAL`` seconds), draws them with ``TerminalSink.ansi`` and writes
each batch with one ``write`` and one ``flush``.  A slow terminal, or one paused with Ctrl-S,
then delays only this thread.

Nobody reads a thousand lines a second.  When more than ``DETAIL_PER_SECOND`` events arrive in
one second, the rest of that second is counted instead of drawn, and a summary line takes their
place once the second is over::

    … 1,234 events not shown in the last 1 s: 56 sessions opened (SMTP 50, POP3 6), 0 mistakes;
      every event is in t.jsonl

Detail resumes with the next quiet second.  Only the view coalesces: the JSONL log, the text
log, the pcap and the web view are other sinks and still receive every event.

A multi-process lab (``--workers``) coalesces in each worker too (``DetailBudget``): a worker sends
the parent whole only the first ``DETAIL_PER_SECOND`` events of each of its seconds and counts the
rest in a ``_Tally``, which the view adds to its own (``add_tally``); so the view shows the same
kind of screen while the parent never rebuilds the thousands of events a second it would not draw.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Callable, TextIO

from mailtrace import knowledge
from mailtrace.transcript.event import Event, Kind
from mailtrace.transcript.terminal import TerminalSink

INTERVAL = 0.05  # seconds between two batches: 20 screen updates a second feel immediate
DETAIL_PER_SECOND = 200  # events drawn line by line in one second; the rest is summed up
MAX_BACKLOG = 5_000  # events queued while the terminal takes no output (Ctrl-S): beyond, only counted
CLOSE_STALL = 5.0  # seconds close() waits for a thread that makes no progress (a terminal taking no output)


class _Tally:
    """What the view did not draw during one second."""

    def __init__(self) -> None:
        self.events = 0
        self.mistakes = 0
        self.opened: collections.Counter[str] = collections.Counter()
        self.closed: list[str] = []  # sessions a lab worker saw close (the view forgets them)

    def add(self, event: Event) -> None:
        self.events += 1
        if event.kind is Kind.OPEN:
            self.opened[event.protocol.upper() or "?"] += 1
        if event.notes:
            if knowledge.mistakes(event):
                self.mistakes += 1  # informative notes (a POP3 session dropped without QUIT) are no mistake
        elif event.kind is Kind.VIOLATION:
            self.mistakes += 1

    def merge(self, other: "_Tally") -> None:
        self.events += other.events
        self.mistakes += other.mistakes
        self.opened.update(other.opened)
        self.closed += other.closed


class DetailBudget:
    """A lab worker's share of the coalescing: ``wanted(event)`` is True for the first
    ``per_second`` events of each second (sent whole, for the view to draw); the others are
    counted in ``tally`` (taken by the caller with ``take_tally``)."""

    def __init__(self, per_second: int = DETAIL_PER_SECOND, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self.tally: _Tally | None = None
        self._second = -1.0
        self._sent = 0

    def wanted(self, event: Event) -> bool:
        now = self.clock()
        if now - self._second >= 1.0:
            self._second, self._sent = now, 0
        if self._sent < self.per_second:
            self._sent += 1
            return True
        if self.tally is None:
            self.tally = _Tally()
        self.tally.add(event)
        if event.kind is Kind.CLOSE:
            self.tally.closed.append(event.session)
        return False

    def take_tally(self) -> "_Tally | None":
        tally, self.tally = self.tally, None
        return tally


class LiveView:
    """A sink that shows events on a terminal from a thread of its own, coalescing floods.

    ``terminal`` draws the lines (its console says whether to use colour); ``prepare`` is
    applied to each event in the thread before drawing (the control-character escaping of
    ``mailtrace.proxy.safe``); ``where`` names the complete record for the summary lines (the
    JSONL log's path, or "" when there is none).
    """

    def __init__(self, terminal: TerminalSink, *, file: TextIO | None = None,
                 prepare: Callable[[Event], Event] | None = None, where: str = "",
                 detail_per_second: int = DETAIL_PER_SECOND, interval: float = INTERVAL) -> None:
        self.terminal = terminal
        self.file = file if file is not None else terminal.console.file
        self.prepare = prepare
        self.where = where
        self.detail_per_second = detail_per_second
        self.interval = interval
        self._queue: collections.deque[Event] = collections.deque()
        self._overflow = _Tally()  # events not queued because the queue was full (counted, not shown)
        self._gone = False  # the terminal is gone (closed pipe, hung up): nothing more is queued
        self._closing = threading.Event()
        self._second = 0.0  # start of the current one-second window
        self._drawn = 0  # events drawn in detail in the current window
        self._tally = _Tally()
        self._progress = 0  # events taken from the queue and batches written: close() watches it
        self._unwritten = 0  # events taken from the queue whose lines are not written yet
        self._thread = threading.Thread(target=self._run, name="mailtrace-live-view", daemon=True)
        self._thread.start()

    # --- the servers' side: cheap ------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if self._gone:
            return
        if len(self._queue) < MAX_BACKLOG:
            self._queue.append(event)
        else:
            self._overflow.add(event)

    def add_tally(self, tally: _Tally) -> None:
        """Events a lab worker counted instead of sending (``DetailBudget``): summed up with the
        view's own, in order with the events queued before them."""
        if self._gone:
            return
        if len(self._queue) < MAX_BACKLOG:
            self._queue.append(tally)
        else:
            self._overflow.merge(tally)

    def close(self, stall: float = CLOSE_STALL) -> None:
        """Draw what is queued (coalesced when it is a lot) and stop the thread.

        A busy machine only makes this take longer: close() waits as long as the thread makes
        progress, and gives up only when it made none for ``stall`` seconds (a terminal that
        takes no more output, paused or never read); then it says on standard error how many
        events were not shown, since the process is about to end and take them with it."""
        self._closing.set()
        seen, since = -1, time.monotonic()
        while self._thread.is_alive():
            self._thread.join(min(stall, 0.1))
            if self._progress != seen:
                seen, since = self._progress, time.monotonic()
            elif time.monotonic() - since >= stall:
                break
        if self._thread.is_alive() and not self._gone:
            self._say_dropped()

    def _say_dropped(self) -> None:
        queued = sum(item.events if type(item) is _Tally else 1 for item in list(self._queue))
        dropped = queued + self._unwritten + self._overflow.events
        if not dropped:
            return
        key = "dropped" if self.where else "dropped-no-log"
        text = knowledge.phrase("live", key, self.terminal.lang, events=f"{dropped:,}", where=self.where)
        try:
            print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    # --- the view's thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            closing = self._closing.wait(self.interval)
            try:
                self._batch(time.monotonic(), final=closing)
            except (OSError, ValueError):  # the terminal is gone (closed, hung up): stop drawing
                self._gone = True
                self._queue.clear()
                return
            if closing:
                return

    def _batch(self, now: float, final: bool = False) -> None:
        out: list[str] = []
        if now - self._second >= 1.0:
            self._summary(out, now - self._second)
            self._second, self._drawn = now, 0
        queue = self._queue
        while queue:
            event = queue.popleft()
            self._progress += 1
            if type(event) is _Tally:  # counted by a lab worker
                self._tally.merge(event)
                for session in event.closed:
                    self.terminal.forget(session)
                self._tally.closed.clear()
                continue
            self._unwritten += 1
            if self._drawn < self.detail_per_second:
                self._drawn += 1
                if self.prepare is not None:
                    event = self.prepare(event)
                out.append(self.terminal.ansi(event))
                if self._drawn % 16 == 0:
                    time.sleep(0)  # let the servers' thread have the GIL now and then
            else:
                self._tally.add(event)
                if event.kind is Kind.CLOSE:
                    self.terminal.forget(event.session)
        overflow, self._overflow = self._overflow, _Tally()
        if overflow.events:
            self._tally.merge(overflow)
        if final:
            self._summary(out, max(now - self._second, 0.001))
        if out:
            self.file.write("".join(out))
            self.file.flush()
        self._unwritten = 0
        self._progress += 1

    def _summary(self, out: list[str], seconds: float) -> None:
        tally = self._tally
        if not tally.events:
            return
        self._tally = _Tally()
        out.append(self.terminal.ansi_line([(summary_text(tally, seconds, self.where, self.terminal.lang), "dim")]))


def summary_text(tally: _Tally, seconds: float, where: str, lang: str = "en") -> str:
    """The one line that stands for the events not drawn (text from knowledge/common.toml)."""
    protocols = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.opened.items())) or "-"
    key = "summary" if where else "summary-no-log"
    return knowledge.phrase("live", key, lang, events=f"{tally.events:,}", seconds=f"{seconds:.0f}" if seconds >= 1 else f"{seconds:.1f}",
                           sessions=f"{sum(tally.opened.values()):,}", protocols=protocols,
                           mistakes=f"{tally.mistakes:,}", where=where)


def stdout_view(lang: str = "en", show_secrets: bool = False, where: str = "",
                prepare: Callable[[Event], Event] | None = None) -> LiveView:
    """The live view of ``mailtrace lab``, ``serve`` and ``proxy``: standard output, colour when
    it is a terminal."""
    from rich.console import Console

    console = Console(highlight=False, file=sys.stdout)
    return LiveView(TerminalSink(console, lang=lang, show_secrets=show_secrets), prepare=prepare, where=where)
