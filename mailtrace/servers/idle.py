"""The idle timeout of a connection's reads, with one timer per connection instead of one per read.

A server drops a client that stays silent too long (SMTP: RFC 5321 §4.5.3.2.7; POP3: RFC 1939
§3; IMAP: RFC 3501 §5.4).  An asyncio timeout context around every read creates, schedules and
cancels a timer each time, several times per message.  Here each read only moves a deadline
(``start`` / ``stop``); the one timer, when it fires before the deadline, sets itself again for
the new one, and once the deadline has passed during a read it cancels the reading task.
"""

from __future__ import annotations

import asyncio


class IdleTimer:
    """``start(seconds)`` before a read, ``stop()`` after it; when the read raises
    ``CancelledError``, ``expired()`` says whether this timer cancelled it (then the read timed
    out) or something else did (the lab stopping: re-raise)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        self._loop = loop
        self._task = task
        self._deadline: float | None = None  # None: no read is waiting
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = 0.0
        self._expired = False

    def start(self, seconds: float) -> None:
        self._deadline = deadline = self._loop.time() + seconds
        if self._handle is None or self._handle_at > deadline:
            if self._handle is not None:
                self._handle.cancel()
            self._handle_at = deadline
            self._handle = self._loop.call_at(deadline, self._fire)

    def stop(self) -> None:
        self._deadline = None  # (the timer stays set: it fires, sees no read waiting, and stops)

    def close(self) -> None:
        self.stop()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def expired(self) -> bool:
        """After a ``CancelledError`` from the read: True when the timeout caused it alone."""
        if not self._expired:
            return False
        self._expired = False
        uncancel = getattr(self._task, "uncancel", None)  # (Python 3.11; 3.10 counts no cancellations)
        return uncancel is None or uncancel() == 0

    def _fire(self) -> None:
        self._handle = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:  # input came since: wait for the new deadline
            self._handle_at = self._deadline
            self._handle = self._loop.call_at(self._deadline, self._fire)
            return
        self._deadline = None
        self._expired = True
        self._task.cancel()
