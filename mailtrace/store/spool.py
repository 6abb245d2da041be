"""Large incoming messages written to the Maildir's tmp/ as they arrive, not held in memory.

An IMAP APPEND of 50 MB used to sit in RAM (in the connection's buffer, then in the command,
then in the delivery); eight of them took a lab server to 430 MB.  A ``Spool`` takes the
octets chunk by chunk and writes them, with LF line ends (``files.to_disk``), to a file in
the user's ``tmp/`` (where the Maildir convention puts messages being delivered; a spool
left by a crash is removed by ``files.clean_tmp``).  ``finish()`` returns a short *token*
that stands for the message wherever bytes are expected (the IMAP command parser, the APPEND
handler); ``Folder.write_message`` recognises a token and publishes the spooled file by
renaming it (after an fsync) instead of writing the bytes again.  ``discard()`` removes the
file of a spool that was never used (the command failed).
"""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from mailtrace.store.files import unique_name

TOKEN_PREFIX = b"\x00mailtrace-spool:"
_ids = itertools.count(1)
_registry: dict[bytes, "Spool"] = {}
_lock = threading.Lock()


class Spool:
    def __init__(self, tmp_dir: Path) -> None:
        self.path = Path(tmp_dir) / ("spool-" + unique_name(0, 0))
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._carry = b""  # a CR at the end of a chunk: its LF may start the next one
        self.received = 0  # octets given to write() (the literal's size on the wire)
        self.disk_size = 0
        self.wire_size = 0
        self.token: bytes | None = None
        self.failed: OSError | None = None  # a write failed (disk full...): the command fails, not the session
        # write() runs in a store job (a worker thread) while discard() may come from the event
        # loop (the client went away): one at a time, and nothing written once discarded
        self._guard = threading.Lock()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` (wire form, CRLF) as it will be stored (LF)."""
        with self._guard:
            if self._fd is None:
                raise OSError("the spooled literal was discarded")
            self.received += len(chunk)
            data = self._carry + chunk
            self._carry = b""
            if data.endswith(b"\r"):
                data, self._carry = data[:-1], b"\r"
            self._put(data.replace(b"\r\n", b"\n"))

    def _put(self, data: bytes) -> None:
        assert self._fd is not None
        self.disk_size += len(data)
        self.wire_size += len(data) + data.count(b"\n") - data.count(b"\r\n")  # files.wire_size
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def finish(self) -> bytes:
        """Close the file; the token that stands for the message."""
        with self._guard:
            if self._carry and self._fd is not None:
                self._put(self._carry)
                self._carry = b""
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self.token = TOKEN_PREFIX + str(next(_ids)).encode() + b"\x00"
        with _lock:
            _registry[self.token] = self
        return self.token

    def discard(self) -> None:
        """Forget the spool and remove its file, unless a delivery took it already."""
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        if self.token is not None:
            with _lock:
                _registry.pop(self.token, None)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def claim(data: bytes) -> Spool | None:
    """The spool a token stands for (once: a token is used by one delivery), or None."""
    if not data.startswith(TOKEN_PREFIX) or len(data) > 64:
        return None
    with _lock:
        return _registry.pop(bytes(data), None)
