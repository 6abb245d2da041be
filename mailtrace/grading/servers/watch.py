"""Watch a Maildir while the student's server delivers into it (Linux inotify, through ctypes).

The checks need to know *how* a message reached new/: a Maildir delivery writes the file in
tmp/ and renames it into new/, so a reader never sees half a message (the Maildir convention,
https://cr.yp.to/proto/maildir.html).  inotify reports a rename into new/ as IN_MOVED_TO and a
file written in place as IN_CREATE; that is all this module records.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading

IN_CREATE = 0x100
IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class MaildirWatch:
    """Records (directory, file name, 'created' | 'moved-in') for every new/ directory watched."""

    def __init__(self, directories: list[str]) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.available = False
        self._fd = -1
        self._wds: dict[int, str] = {}
        self._stop = threading.Event()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if self._fd < 0:
                return
            for d in directories:
                wd = libc.inotify_add_watch(self._fd, os.fsencode(d), IN_CREATE | IN_MOVED_TO)
                if wd >= 0:
                    self._wds[wd] = d
        except (OSError, AttributeError):
            return
        self.available = bool(self._wds)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if ready:
                self._drain()

    def _drain(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, OSError):
            return
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size: pos + _EVENT.size + length].rstrip(b"\0").decode("utf-8", "replace")
            pos += _EVENT.size + length
            how = "moved-in" if mask & IN_MOVED_TO else "created"
            self.events.append((self._wds.get(wd, "?"), name, how))

    def stop(self) -> list[tuple[str, str, str]]:
        if self._fd >= 0:
            self._stop.set()
            if self.available:
                self._thread.join(1.0)
                self._drain()
            os.close(self._fd)
            self._fd = -1
        return self.events
