"""Maildir file-level helpers: unique names, wire sizes, directory creation and fsync.

The Maildir specification (cr.yp.to/proto/maildir.html) names each message uniquely:
"time.MusecPpid.host" ("Q" + a delivery counter makes it unique within the process), with
"/" and ":" in the host name replaced by "\\057" and "\\072".  Dovecot appends fields after
a comma: ",S=<octets on disk>,W=<octets with CRLF line ends>", which lets a reader know a
message's size from its name alone; we write both.  Files hold LF line ends (``to_disk``),
as Dovecot writes them; readers get the CRLF wire form from ``to_wire``.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import time
from pathlib import Path

SUBDIRS = ("tmp", "new", "cur")
FOLDER_MARKER = "maildirfolder"  # Maildir++: marks a sub-folder (Dovecot creates it too)
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_counter = itertools.count(1)


def _hostname() -> str:
    # Maildir spec: "replace / with \057 and : with \072"; "," starts Dovecot's fields.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


_HOST = _hostname()


def unique_name(size: int, wire_size: int) -> str:
    """A Maildir unique name: "time.MusecPpidQn.host,S=size,W=wiresize"."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{_HOST},S={size},W={wire_size}"


def wire_size(data: bytes) -> int:
    """Octets of ``data`` with every bare LF sent as CRLF (RFC 5322 §2.3: lines end in CRLF)."""
    if b"\r" not in data:  # a file in the disk form (LF line ends): no CRLF to count (half the time)
        return len(data) + data.count(b"\n")
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def to_wire(data: bytes) -> bytes:
    """Every bare LF as CRLF (files written by Dovecot or mutt use LF line ends)."""
    if b"\r" not in data:  # the common LF-only file: a plain replace is ~50x faster than the regex
        return data.replace(b"\n", b"\r\n")
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF_RE.sub(b"\r\n", data)


def read_file(path: str, expected: int = 0) -> bytes:
    """The whole file at ``path`` (FileNotFoundError if there is none), in one read of
    ``expected`` + 1 octets when the caller knows about how big it is (a message's wire size),
    and one more read that finds the end.  Four system calls where ``open(path, "rb").read()``
    makes seven (it adds fstat twice and a terminal check): a message read by a store job costs
    half the CPU, and each call is one more wait for the interpreter lock under load."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        want = expected + 1 if expected > 0 else 1 << 16
        while True:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            want = 1 << 16
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def to_disk(data: bytes) -> bytes:
    """Every CRLF as LF: Maildir files use the local (Unix) line end, as Dovecot, Postfix's
    local(8) and mutt write and expect them (mutt shows a stored CR as ``^M``).  ``to_wire``
    gives the CRLF form back for POP3 and IMAP."""
    # (split and join: the same bytes as ``replace``, in 60% of its time on a text message)
    return b"\n".join(data.split(b"\r\n")) if b"\r\n" in data else data


# The Maildir convention (cr.yp.to/proto/maildir.html): "When you look through a tmp
# directory, delete files that haven't been accessed in more than 36 hours."  They are what a
# delivery killed half-way (kill -9, power loss) left behind; nothing will ever finish them.
STALE_TMP_SECONDS = 36 * 3600


def clean_tmp(maildir: Path, now: float | None = None) -> list[str]:
    """Remove stale entries of ``maildir``/tmp (see STALE_TMP_SECONDS); returns their names."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(maildir / "tmp"))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if now - max(st.st_atime, st.st_mtime) <= STALE_TMP_SECONDS:
                continue
            if entry.is_dir(follow_symlinks=False):  # a deleted mailbox being removed
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            continue  # gone already, or not ours to remove: leave it
    return removed


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_maildir(path: Path, marker: bool) -> None:
    """Create cur/, new/ and tmp/ under ``path`` (which must exist or be creatable)."""
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    for sub in SUBDIRS:
        (path / sub).mkdir(mode=_DIR_MODE, exist_ok=True)
    if marker:
        (path / FOLDER_MARKER).touch(mode=_FILE_MODE)
