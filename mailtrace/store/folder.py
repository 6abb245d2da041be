"""One Maildir on disk and the process-wide cache of what is in it.

Theory of operation (Maildir, cr.yp.to/proto/maildir.html): "A message is delivered in
four steps": create a file with a unique name in tmp/, write it, "NFS-writing ... fsync"
it, then "link the file to new/" (we ``rename``, which is equally atomic).  "Reader
programs ... looks through new and cur", and may "move the file from new to cur" adding
":2," and flag letters to its name.  Because a message only ever appears in new/ or cur/
by an atomic rename of a complete, fsync'd file, a reader can never see half a message.

One ``Folder`` object exists per Maildir per store; every ``Mailbox`` view of it (one per
session) shares it.  It keeps:

* the directory listing (unique name -> current file name), rescanned only when the
  modification time of new/ or cur/ changed (or was too recent to be trusted: file-system
  time stamps are coarse, so a change in the same clock tick as our scan would go unseen);
* the size and date of each file, computed once: a Maildir file's content never changes,
  only its name (flags) and directory;
* the UIDs, through ``UidList`` (``dovecot-uidlist``).

Every change is made under the folder's thread lock, and a file is made visible (renamed
into new/ or cur/) and given its UID in one locked step, so UIDs appear in strictly
ascending order (RFC 3501 §2.3.1.1) for every reader in the process.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterable

from mailtrace.store.flags import INFO_PREFIX, Keywords, split_name
from mailtrace.store.model import MailboxNotFound, MessageInfo
from mailtrace.store.uidlist import UidList

SUBDIRS = ("tmp", "new", "cur")
FOLDER_MARKER = "maildirfolder"  # Maildir++: marks a sub-folder (Dovecot creates it too)
# A directory mtime this close to "now" may hide a change made in the same clock tick
# (Linux file times come from a coarse clock), so such a listing is never trusted.
MTIME_GRACE = 2.0  # seconds
_WIRE_SIZE_RE = re.compile(r",W=(\d+)")  # Dovecot's "virtual size" (CRLF size) in the name
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
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def to_wire(data: bytes) -> bytes:
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF_RE.sub(b"\r\n", data)


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


class Folder:
    """The shared, cached state of one Maildir (see the module docstring)."""

    def __init__(self, user: str, name: str, path: Path, user_dir: Path, fsync: bool = True):
        self.user = user
        self.name = name
        self.path = path
        self.fsync = fsync
        self.lock = threading.RLock()
        self.uidlist = UidList(path, user_dir)
        self.keywords = Keywords(path)
        self.files: dict[str, tuple[str, str]] = {}  # base -> (subdir, file name)
        self.infos: dict[int, MessageInfo] = {}  # uid -> info, current
        self._meta: dict[str, tuple[int, float]] = {}  # base -> (wire size, mtime)
        self._dir_key: tuple[int, ...] | None = None
        self._trusted = False  # the listing at _dir_key can be trusted (not within grace)
        self._kw_key: tuple | None = None
        self.version = 0  # bumped on every change of ``infos``
        self.scans = 0  # full rescans done (tests check the cache works)

    # -- scanning --------------------------------------------------------------------
    def _dir_stat(self) -> tuple[int, ...] | None:
        try:
            st_new = os.stat(self.path / "new")
            st_cur = os.stat(self.path / "cur")
        except (FileNotFoundError, NotADirectoryError):
            return None
        return (st_new.st_ino, st_new.st_mtime_ns, st_cur.st_ino, st_cur.st_mtime_ns)

    def signature(self) -> tuple:
        """What changes when anyone changes this Maildir (used by the store's poller)."""
        try:
            st = os.stat(self.uidlist.path)
            ul = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            ul = None
        return (self._dir_stat(), ul)

    def exists(self) -> bool:
        return (self.path / "cur").is_dir()

    def sync(self, force: bool = False) -> bool:
        """Bring the cache up to date with the disk; True when something changed."""
        with self.lock:
            dir_key = self._dir_stat()
            if dir_key is None:  # the folder was deleted under us
                changed = bool(self.infos)
                self.files, self.infos, self._dir_key = {}, {}, None
                if changed:
                    self.version += 1
                return changed
            kw_key = self._keywords_key()
            if (not force and self._trusted and dir_key == self._dir_key
                    and kw_key == self._kw_key and not self.uidlist.changed_on_disk()):
                return False
            return self._rescan(dir_key, kw_key)

    def _keywords_key(self) -> tuple | None:
        try:
            st = os.stat(self.keywords.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _rescan(self, dir_key: tuple[int, ...], kw_key: tuple | None) -> bool:
        self.scans += 1
        scan_time = time.time()
        files: dict[str, tuple[str, str]] = {}
        for sub in ("new", "cur"):  # cur/ last: it wins if a name is in both
            try:
                with os.scandir(self.path / sub) as it:
                    for entry in it:
                        if entry.name.startswith("."):
                            continue
                        base, _ = split_name(entry.name)
                        files[base] = (sub, entry.name)
            except FileNotFoundError:
                pass
        newest = max(dir_key[1], dir_key[3]) / 1e9
        self._trusted = scan_time - newest > MTIME_GRACE
        self._dir_key = dir_key
        self.keywords.load()
        kw_changed = kw_key != self._kw_key
        self._kw_key = kw_key
        ul = self.uidlist
        old_validity = ul.uidvalidity
        if not ul.load() or any(base not in ul.by_base for base in files):
            with ul.locked():
                if not ul.load():
                    ul.create()
                unknown = sorted(base for base in files if base not in ul.by_base)
                ul.assign(unknown)
        reuse: dict[str, MessageInfo] = {}
        if ul.uidvalidity == old_validity and not kw_changed:
            reuse = {info.key: info for info in self.infos.values()}
        infos: dict[int, MessageInfo] = {}
        for base, (sub, filename) in files.items():
            info = self._info_for(base, sub, filename, ul.by_base[base], reuse.get(base))
            if info is not None:
                infos[info.uid] = info
        changed = infos != self.infos
        self.files = {info.key: files[info.key] for info in infos.values()}
        if changed:
            self.infos = infos
            self.version += 1
        return changed

    def _info_for(self, base: str, sub: str, filename: str, uid: int,
                  cached: MessageInfo | None) -> MessageInfo | None:
        recent = sub == "new"
        _, info_letters = split_name(filename)
        flags = self.keywords.flags_of(info_letters)
        if (cached is not None and cached.uid == uid and cached.flags == flags
                and cached.recent == recent):
            return cached
        meta = self._meta.get(base)
        if meta is None:
            meta = self._read_meta(self.path / sub / filename, base)
            if meta is None:
                return None
        return MessageInfo(uid=uid, key=base, size=meta[0], flags=flags,
                           internaldate=meta[1], recent=recent)

    def _read_meta(self, path: Path, base: str) -> tuple[int, float] | None:
        try:
            st = os.stat(path)
            m = _WIRE_SIZE_RE.search(base)
            if m:
                size = int(m.group(1))
            else:
                with open(path, "rb") as f:
                    size = wire_size(f.read())
        except FileNotFoundError:
            return None
        meta = (size, st.st_mtime)
        self._meta[base] = meta
        return meta

    # -- reading ---------------------------------------------------------------------
    def read_raw(self, base: str) -> bytes:
        """The file's bytes as stored; KeyError when the message is gone."""
        for attempt in range(2):
            where = self.files.get(base)
            if where is not None:
                try:
                    with open(self.path / where[0] / where[1], "rb") as f:
                        return f.read()
                except FileNotFoundError:
                    pass  # renamed (flags) or expunged by someone else: look again
            if attempt == 0:
                self.sync(force=True)
        raise KeyError(base)

    # -- writing ---------------------------------------------------------------------
    def write_message(self, data: bytes, info_letters: str = "",
                      internaldate: float | None = None) -> MessageInfo:
        """Atomic Maildir delivery of ``data`` (stored exactly as given)."""
        base = unique_name(len(data), wire_size(data))
        tmp_path = self.path / "tmp" / base
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         _FILE_MODE)
        except FileNotFoundError:
            raise MailboxNotFound(f"mailbox {self.name!r} of {self.user!r} does not exist") from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if internaldate is not None:
                    os.utime(fd, (internaldate, internaldate))
                if self.fsync:
                    os.fsync(fd)
                mtime = os.fstat(fd).st_mtime
            finally:
                os.close(fd)
            sub = "cur" if info_letters else "new"
            filename = base + INFO_PREFIX + info_letters if info_letters else base
            info = self._publish([(tmp_path, sub, filename, base, (wire_size(data), mtime))])[0]
        except BaseException:
            try:
                os.unlink(tmp_path)
            except FileNotFoundError:
                pass
            raise
        if self.fsync:
            fsync_dir(self.path / sub)
        return info

    def _publish(self, items: list[tuple[Path, str, str, str, tuple[int, float]]]
                 ) -> list[MessageInfo]:
        """Rename complete files from tmp/ into new/ or cur/ and give them UIDs, in one
        locked step (so UIDs become visible in ascending order)."""
        out = []
        with self.lock:
            for tmp_path, sub, filename, base, meta in items:
                os.rename(tmp_path, self.path / sub / filename)
                self._meta[base] = meta
            ul = self.uidlist
            with ul.locked():
                if not ul.load():
                    ul.create()
                uids = ul.assign([item[3] for item in items])
            for (_, sub, filename, base, meta), uid in zip(items, uids):
                _, letters = split_name(filename)
                info = MessageInfo(uid=uid, key=base, size=meta[0],
                                   flags=self.keywords.flags_of(letters),
                                   internaldate=meta[1], recent=sub == "new")
                self.files[base] = (sub, filename)
                self.infos[uid] = info
                out.append(info)
            self.version += 1
        return out

    def info_letters(self, flags: Iterable[str], old_letters: str = "") -> str:
        with self.lock:
            self.keywords.load()
            if any(not flag.startswith("\\") for flag in flags):
                with self.uidlist.locked():  # keyword table shared with other processes
                    self.keywords.load()
                    return self.keywords.info_of(flags, old_letters)
            return self.keywords.info_of(flags, old_letters)

    def set_flags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        flags = list(flags)
        with self.lock:
            for attempt in range(2):
                info = self.infos.get(uid)
                if info is not None:
                    sub, filename = self.files[info.key]
                    _, old_letters = split_name(filename)
                    letters = self.info_letters(flags, old_letters)
                    new_name = info.key + INFO_PREFIX + letters
                    if (sub, filename) == ("cur", new_name):
                        return info
                    try:
                        os.rename(self.path / sub / filename, self.path / "cur" / new_name)
                    except FileNotFoundError:
                        pass  # renamed or expunged by another process: rescan, retry
                    else:
                        self.files[info.key] = ("cur", new_name)
                        new = MessageInfo(uid=uid, key=info.key, size=info.size,
                                          flags=self.keywords.flags_of(letters),
                                          internaldate=info.internaldate, recent=False)
                        self.infos[uid] = new
                        self.version += 1
                        return new
                if attempt == 0:
                    self.sync(force=True)
        raise KeyError(uid)

    def expunge(self, uids: Iterable[int]) -> list[int]:
        removed: list[int] = []
        with self.lock:
            bases = []
            for uid in uids:
                info = self.infos.get(uid)
                if info is None:
                    continue
                for attempt in range(2):
                    where = self.files.get(info.key)
                    if where is None:
                        break
                    try:
                        os.unlink(self.path / where[0] / where[1])
                    except FileNotFoundError:
                        if attempt == 0:
                            self.sync(force=True)
                        continue
                    removed.append(uid)
                    bases.append(info.key)
                    break
            for uid, base in zip(removed, bases):
                self.infos.pop(uid, None)
                self.files.pop(base, None)
                self._meta.pop(base, None)
            if bases:
                with self.uidlist.locked():
                    self.uidlist.load()
                    self.uidlist.remove(bases)
                self.version += 1
        return removed

    def copy_in(self, sources: list[tuple[Path, MessageInfo]]) -> list[MessageInfo | None]:
        """Copy files (hard links when possible) into this folder with their flags and
        dates; one result per source, None for a source that vanished meanwhile."""
        items: list[tuple[Path, str, str, str, tuple[int, float]]] = []
        slots: list[int | None] = []
        for src_path, info in sources:
            try:
                base = unique_name(os.stat(src_path).st_size, info.size)
                tmp_path = self.path / "tmp" / base
                try:
                    os.link(src_path, tmp_path)  # same content, same mtime (INTERNALDATE)
                except FileNotFoundError:
                    raise
                except OSError:  # no hard links here (other file system): copy the bytes
                    data = src_path.read_bytes()
                    with open(tmp_path, "xb") as f:
                        f.write(data)
                        f.flush()
                        if self.fsync:
                            os.fsync(f.fileno())
                    os.utime(tmp_path, (info.internaldate, info.internaldate))
            except FileNotFoundError:
                slots.append(None)
                continue
            letters = self.info_letters(info.flags)
            sub = "cur" if letters else "new"
            filename = base + INFO_PREFIX + letters if letters else base
            slots.append(len(items))
            items.append((tmp_path, sub, filename, base, (info.size, info.internaldate)))
        published = self._publish(items) if items else []
        if self.fsync:
            for sub in {item[1] for item in items}:
                fsync_dir(self.path / sub)
        return [None if idx is None else published[idx] for idx in slots]

    def path_of(self, base: str) -> Path | None:
        where = self.files.get(base)
        return None if where is None else self.path / where[0] / where[1]

    def mark_seen_by_client(self) -> None:
        """Move every file of new/ to cur/ (Maildir: the client has now seen it)."""
        with self.lock:
            changed = False
            for base, (sub, filename) in list(self.files.items()):
                if sub != "new":
                    continue
                new_name = filename if ":" in filename else filename + INFO_PREFIX
                try:
                    os.rename(self.path / "new" / filename, self.path / "cur" / new_name)
                except FileNotFoundError:
                    continue
                self.files[base] = ("cur", new_name)
                uid = self.uidlist.by_base.get(base)
                info = self.infos.get(uid) if uid is not None else None
                if info is not None:
                    self.infos[uid] = MessageInfo(uid=uid, key=base, size=info.size,
                                                  flags=info.flags,
                                                  internaldate=info.internaldate, recent=False)
                changed = True
            if changed:
                self.version += 1

    def close(self) -> None:
        self.uidlist.close()
