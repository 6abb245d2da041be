"""The file handling every text sink shares (``JsonlSink``, ``TextSink``).

A sink writes to a path (opened here, closed by ``close()``) or to a file the caller opened
(``sys.stdout``, a test's ``StringIO``: left open).  A sink's ``handle()`` writes one event and
flushes when ``autoflush`` is set or the session ends (``Kind.CLOSE``), so ``tail -f`` shows
every finished conversation; ``flush()`` is the recorder's once-per-batch call.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from mailtrace.transcript.event import Event, Kind

BUFFER = 1 << 20  # octets written per system call at most (flush() writes what is pending)


class FileSink:
    def __init__(self, target: str | Path | IO[str], autoflush: bool = True) -> None:
        if isinstance(target, (str, Path)):
            # A large buffer: a line longer than the default 8 KB (a message body) would be a
            # system call of its own, and a log writer's thread loses the GIL at each one.
            self._file: IO[str] = open(target, "w", encoding="utf-8", buffering=BUFFER)
            self._owned = True
        else:
            self._file = target
            self._owned = False
        self.autoflush = autoflush

    def _written(self, event: Event) -> None:
        """Call after writing ``event``: flush if autoflush is on or the session ended."""
        if self.autoflush or event.kind is Kind.CLOSE:
            self._file.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self._owned and not self._file.closed:
            self._file.close()
