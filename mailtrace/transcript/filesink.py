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


class FileSink:
    def __init__(self, target: str | Path | IO[str], autoflush: bool = True) -> None:
        if isinstance(target, (str, Path)):
            self._file: IO[str] = open(target, "w", encoding="utf-8")
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
