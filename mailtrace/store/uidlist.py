"""Persistent IMAP unique identifiers for one Maildir: the uidlist file.

RFC 3501 §2.3.1.1: "Unique identifiers are assigned in a strictly ascending fashion in the
mailbox; as each message is added to the mailbox it is assigned a higher UID than the
message(s) which were added previously. ... The unique identifier of a message MUST NOT
change during the session, and SHOULD NOT change between sessions."  And: "If unique
identifiers from an earlier session fail to persist in this session, the unique identifier
validity value MUST be greater than the one used in the earlier session."

Maildir itself has no UIDs, so every IMAP server keeps a side file mapping each message's
unique file name to its UID.  We use Dovecot's own file, ``dovecot-uidlist`` (format
version 3), so that Dovecot and mailtrace agree on the UIDs of the same Maildir:

    3 V1795710122 N3 G<mailbox guid>      header: version, UIDVALIDITY, next UID, extras
    1 :1795710122.M106634P11219.host,S=33,W=38
    2 W1234 :1795710199.M1P2Q3.host      uid, optional extension fields, ":" file name

New records are *appended* (one short ``write`` under the lock, as Dovecot does), so a
delivery does not rewrite the file; removals rewrite it whole through a temporary file and
``rename`` (atomic: a reader sees the old list or the new one, never half of one).  A last
line without its newline (a writer that crashed) is ignored and the file is rewritten before
the next append.  The header's N may lag behind appended records, so the next UID is the
larger of N and (highest UID + 1): a UID is never handed out twice.

Writers in several mailtrace processes agree through an ``fcntl.flock`` on
``mailtrace-uidlist.lock``; writers in one process are serialised by the caller (the
folder's thread lock).  While holding it we also take Dovecot's own lock, the dot-lock file
``dovecot-uidlist.lock`` (created with O_EXCL, holding "pid:host"; stale when its process is
gone or it is older than ``DOTLOCK_STALE``), so that a Dovecot serving the same Maildir at
the same time never rewrites the list under us.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

UIDLIST_NAME = "dovecot-uidlist"
LOCK_NAME = "mailtrace-uidlist.lock"
UIDVALIDITY_NAME = "dovecot-uidvalidity"  # per user: the last UIDVALIDITY handed out (hex)
UIDVALIDITY_LOCK_NAME = "mailtrace-uidvalidity.lock"
FORMAT_VERSION = 3
MAX_UID = 2**32 - 1  # RFC 3501 §9: uniqueid = nz-number, a 32-bit unsigned value
_FILE_MODE = 0o600
DOTLOCK_NAME = "dovecot-uidlist.lock"
DOTLOCK_STALE = 120.0  # seconds: Dovecot's default for this lock (maildir-uidlist.c)
DOTLOCK_WAIT = 10.0  # seconds to wait for a live holder before taking the lock anyway
_HOST = socket.gethostname()
HOLDER_PREFIX = "mailtrace-dotlock."  # + "host.pid": the file we link as the dot-lock


class UidList:
    """The in-memory copy of one Maildir's uidlist file, kept in step with the file."""

    def __init__(self, directory: Path, user_dir: Path) -> None:
        self.path = directory / UIDLIST_NAME
        self._lock_path = directory / LOCK_NAME
        self._user_dir = user_dir
        self.uidvalidity = 0
        self.next_uid = 1
        self.by_base: dict[str, int] = {}
        self._ext: dict[str, str] = {}  # base -> extension fields kept verbatim
        self._header_extra: list[str] = []  # unknown header fields kept verbatim
        self._seen: tuple[int, int, int] | None = None  # (ino, size, mtime_ns) last read/written
        self._offset = 0  # octets of complete lines parsed
        self._dirty_tail = False  # the file ends in a partial line
        self._lock_fd: int | None = None
        self._holder: tuple[int, Path] | None = None  # (pid, file linked as the dot-lock)
        self.lost_count = 0  # times the list had to be recreated (tests, diagnostics)

    # -- locking -----------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cross-process lock (the caller already holds the folder's thread lock)."""
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    _FILE_MODE)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            dotlock = self._dotlock()
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dotlock)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _dotlock(self) -> Path:
        """Take Dovecot's ``dovecot-uidlist.lock`` (see the module docstring).

        Like Dovecot we create the lock by ``link()``ing a file that already holds our
        "pid:host" to the lock name: atomic, and far cheaper than creating a new file on
        every update (creating an inode costs as much as the delivery's own file).
        """
        path = self.path.with_name(DOTLOCK_NAME)
        deadline = time.monotonic() + DOTLOCK_WAIT
        while True:
            try:
                self._take_dotlock(path)
                return path
            except FileExistsError:
                if _dotlock_stale(path) or time.monotonic() > deadline:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                else:
                    time.sleep(0.01)

    def _take_dotlock(self, path: Path) -> None:
        pid = os.getpid()
        if self._holder is None or self._holder[0] != pid:
            holder = self.path.with_name(f"{HOLDER_PREFIX}{_HOST}.{pid}")
            self._holder = (pid, holder)
            self._write_holder()
            _remove_dead_holders(self.path.parent)
        try:
            os.link(self._holder[1], path)
        except FileExistsError:
            raise
        except FileNotFoundError:  # someone removed our holder: make it again
            self._write_holder()
            os.link(self._holder[1], path)
        except OSError:  # no hard links on this file system: create the lock directly
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
            try:
                os.write(fd, f"{os.getpid()}:{_HOST}".encode())
            finally:
                os.close(fd)

    def _write_holder(self) -> None:
        assert self._holder is not None
        pid, holder = self._holder
        tmp = holder.with_name(holder.name + ".new")
        tmp.write_bytes(f"{pid}:{_HOST}".encode())
        os.replace(tmp, holder)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._holder is not None and self._holder[0] == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._holder[1])
            self._holder = None

    # -- reading -----------------------------------------------------------------------
    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed_on_disk(self) -> bool:
        return self._stat() != self._seen

    def load(self) -> bool:
        """Bring the in-memory list up to date with the file.

        Returns False when there is no usable list (missing or with a broken header): the
        caller must then ``create()`` one (under the lock) with a new UIDVALIDITY.
        """
        st = self._stat()
        if st is None:
            return False
        if st == self._seen:
            return True
        same_file = self._seen is not None and st[0] == self._seen[0] and st[1] >= self._offset
        try:
            with open(self.path, "rb") as f:
                if same_file:  # the file only grew: parse the appended records
                    f.seek(self._offset)
                    data = f.read()
                    self._parse_records(data, self._offset)
                else:
                    data = f.read()
                    if not self._parse_all(data):
                        return False
                st2 = os.fstat(f.fileno())
        except FileNotFoundError:
            return False
        self._seen = (st2.st_ino, st2.st_size, st2.st_mtime_ns)
        return True

    def _parse_all(self, data: bytes) -> bool:
        end = data.find(b"\n")
        if end < 0:
            return False
        fields = data[:end].decode("utf-8", "replace").split()
        if not fields or not fields[0].isdigit():
            return False
        version = int(fields[0])
        uidvalidity, next_uid, extra = 0, 1, []
        if version == 1 and len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            uidvalidity, next_uid = int(fields[1]), int(fields[2])
        elif version in (2, 3):
            for field in fields[1:]:
                if field[:1] == "V" and field[1:].isdigit():
                    uidvalidity = int(field[1:])
                elif field[:1] == "N" and field[1:].isdigit():
                    next_uid = int(field[1:])
                else:
                    extra.append(field)
        else:
            return False
        if not 0 < uidvalidity <= MAX_UID:
            return False
        self.uidvalidity, self.next_uid = uidvalidity, max(1, next_uid)
        self._header_extra = extra
        self.by_base, self._ext = {}, {}
        self._offset = end + 1
        self._parse_records(data[end + 1:], end + 1)
        return True

    def _parse_records(self, data: bytes, start: int) -> None:
        pos = 0
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                break
            self._parse_record(data[pos:end].decode("utf-8", "surrogateescape"))
            pos = end + 1
        self._offset = start + pos
        self._dirty_tail = pos < len(data)

    def _parse_record(self, line: str) -> None:
        head, sep, filename = line.partition(" :")
        if not sep:  # format 1: "uid filename"
            head, _, filename = line.partition(" ")
        parts = head.split(" ")
        if not parts[0].isdigit() or not filename:
            return  # a damaged line: ignore it (its message gets a new UID)
        uid = int(parts[0])
        base = filename.split(":", 1)[0]
        if not 0 < uid <= MAX_UID or base in self.by_base:
            return
        self.by_base[base] = uid
        if len(parts) > 1:
            self._ext[base] = " ".join(parts[1:])
        if uid >= self.next_uid:
            self.next_uid = uid + 1

    # -- writing (caller holds ``locked()``) --------------------------------------------
    def create(self) -> None:
        """Start a new, empty list with a new UIDVALIDITY (the old list is lost)."""
        if self._seen is not None or self.path.exists():
            self.lost_count += 1
        self.uidvalidity = next_uidvalidity(self._user_dir, self.uidvalidity)
        self.next_uid = 1
        self.by_base, self._ext, self._header_extra = {}, {}, []
        self.rewrite()

    def assign(self, bases: Iterable[str]) -> list[int]:
        """UIDs for ``bases`` (file names without info), appending records for new ones."""
        uids, lines = [], []
        for base in bases:
            uid = self.by_base.get(base)
            if uid is None:
                uid = self.next_uid
                self.next_uid += 1
                self.by_base[base] = uid
                lines.append(f"{uid} :{base}\n")
            uids.append(uid)
        if lines:
            if self._dirty_tail or self._seen is None:
                self.rewrite()
            else:
                self._append("".join(lines).encode("utf-8", "surrogateescape"))
        return uids

    def remove(self, bases: Iterable[str]) -> None:
        removed = False
        for base in bases:
            if self.by_base.pop(base, None) is not None:
                self._ext.pop(base, None)
                removed = True
        if removed:
            self.rewrite()

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, data)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self._offset += len(data)
        self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)

    def rewrite(self) -> None:
        """Write the whole list through a temporary file and an atomic rename."""
        header = [str(FORMAT_VERSION), f"V{self.uidvalidity}", f"N{self.next_uid}",
                  *self._header_extra]
        out = [" ".join(header) + "\n"]
        for base, uid in sorted(self.by_base.items(), key=lambda item: item[1]):
            ext = self._ext.get(base)
            out.append(f"{uid} {ext} :{base}\n" if ext else f"{uid} :{base}\n")
        data = "".join(out).encode("utf-8", "surrogateescape")
        tmp = self.path.with_name(f"{UIDLIST_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _FILE_MODE)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        self._offset = len(data)
        self._dirty_tail = False


def _remove_dead_holders(directory: Path) -> None:
    """Remove the dot-lock holder files left by processes of this host that died."""
    prefix = f"{HOLDER_PREFIX}{_HOST}."
    with os.scandir(directory) as it:
        names = [e.name for e in it if e.name.startswith(prefix)]
    for name in names:
        pid = name[len(prefix):]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / name)
        except PermissionError:
            pass


def _dotlock_stale(path: Path) -> bool:
    try:
        st = os.stat(path)
        holder = path.read_bytes().decode("ascii", "replace")
    except FileNotFoundError:
        return False  # released meanwhile: just try again
    if time.time() - st.st_mtime > DOTLOCK_STALE:
        return True
    pid, _, host = holder.partition(":")
    if host.strip() == _HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its process is gone
        except PermissionError:
            return False
    return False


_given: dict[str, int] = {}  # user dir -> last UIDVALIDITY this process handed out
_given_lock = threading.Lock()


def next_uidvalidity(user_dir: Path, previous: int = 0) -> int:
    """A UIDVALIDITY greater than any handed out before for this user (RFC 3501 §2.3.1.1).

    The last value is kept in ``dovecot-uidvalidity`` (8 hex digits, as Dovecot keeps it),
    so a mailbox deleted and re-created in the same second still gets a new value.
    """
    path = user_dir / UIDVALIDITY_NAME
    lock_fd = os.open(user_dir / UIDVALIDITY_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                      _FILE_MODE)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            last = int(path.read_bytes().decode("ascii").strip() or "0", 16)
        except (FileNotFoundError, ValueError):
            last = 0
        with _given_lock:  # also survives the file being removed with the Maildir
            value = max(int(time.time()), last + 1, previous + 1,
                        _given.get(str(user_dir), 0) + 1)
            if value > MAX_UID:  # the year 2106: wrap to a small value, still "new"
                value = 1
            _given[str(user_dir)] = value
        tmp = path.with_name(f"{UIDVALIDITY_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(f"{value:08x}".encode("ascii"))
        os.replace(tmp, path)
        return value
    finally:
        os.close(lock_fd)
