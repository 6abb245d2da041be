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

import contextlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Iterable

from mailtrace.store import cache
from mailtrace.store.files import fsync_dir, read_file, to_disk, to_wire, unique_name, wire_size
from mailtrace.store.spool import claim
from mailtrace.store.flags import INFO_PREFIX, Keywords, split_name
from mailtrace.store.model import MailboxNotFound, MessageInfo
from mailtrace.store.modseq import ModSeqs
from mailtrace.store.uidlist import UidList

# A directory mtime this close to "now" may hide a change made in the same clock tick
# (Linux file times come from a coarse clock), so such a listing is never trusted.
MTIME_GRACE = 2.0  # seconds
_WIRE_SIZE_RE = re.compile(r",W=(\d+)")  # Dovecot's "virtual size" (CRLF size) in the name
_FILE_MODE = 0o600


class Folder:
    """The shared, cached state of one Maildir (see the module docstring)."""

    def __init__(self, user: str, name: str, path: Path, user_dir: Path, fsync: bool = True):
        self.user = user
        self.name = name
        self.path = path
        self._dir = os.fspath(path)  # str paths on the delivery path: pathlib costs ~5% of a 1 KB delivery
        self.fsync = fsync
        self.lock = threading.RLock()
        self.uidlist = UidList(path, user_dir)
        self.keywords = Keywords(path)
        self.modseqs = ModSeqs(path)  # CONDSTORE mod-sequences (RFC 7162 §3)
        self.files: dict[str, tuple[str, str]] = {}  # base -> (subdir, file name)
        self.infos: dict[int, MessageInfo] = {}  # uid -> info, current
        # \Recent messages that are not in new/ (copied or appended with flags, which puts
        # them in cur/; or flagged before any session saw them).  RFC 3501 §2.3.2: \Recent
        # means "this session is the first session to have been notified about this message";
        # kept in memory, so a restart of the lab makes them not recent (as a new/ file that a
        # client read would be).
        self.unclaimed: set[int] = set()
        self._meta: dict[str, tuple[int, float]] = {}  # base -> (wire size, mtime)
        # bases whose file holds the wire form already (CRLF line ends): a file's content never
        # changes, so the CRLF check of ``to_wire`` (two passes over the message) is made once
        # per message, not at every read that misses the cache
        self._crlf: set[str] = set()
        self._dir_key: tuple[int, ...] | None = None
        self._trusted = False  # the listing at _dir_key can be trusted (not within grace)
        self._kw_key: tuple | None = None
        self._renames = 0  # files renamed into new/ or cur/ so far (fsync tickets)
        self._synced: dict[str, int] = {}  # subdir -> renames known durable
        self._fsync_lock = threading.Lock()
        self.cache = cache.shared()  # keyed by (folder, unique name): one budget for every Maildir
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
        moved: dict[str, tuple[str, str]] = {}  # renamed since the listing: where they are
        for base, (sub, filename) in files.items():
            info = self._info_for(base, sub, filename, ul.by_base[base], reuse.get(base), moved)
            if info is not None:
                infos[info.uid] = info
        files.update(moved)
        changed = infos != self.infos
        self._track_modseqs(infos, self.infos if ul.uidvalidity == old_validity else {})
        self.files = {info.key: files[info.key] for info in infos.values()}
        if changed:
            self.infos = infos
            self.version += 1
        return changed

    def _track_modseqs(self, infos: dict[int, MessageInfo], old: dict[int, MessageInfo]) -> None:
        """Changes seen on disk (another program delivered, flagged or deleted) get
        mod-sequences too; a message never seen before gets one once, then keeps it."""
        mods = self.modseqs
        mods.load(self.uidlist.uidvalidity)
        mods.bump(uid for uid, info in infos.items()
                  if uid not in mods.of or (uid in old and old[uid].flags != info.flags))
        gone = [uid for uid in mods.of if uid not in infos]
        if gone:
            mods.forget(gone)

    # The three mod-sequence reads take no lock: an IMAP core calls them on the event loop
    # while a store job may hold ``self.lock`` for up to DOTLOCK_WAIT seconds (waiting for
    # another program's dovecot-uidlist.lock).  They read what the last ``sync()`` loaded
    # (every IMAP command that looks at the mailbox syncs in its job first); each read is one
    # atomic step on the dicts of ``ModSeqs``, which a writer replaces or updates in place.
    def modseq(self, uid: int) -> int:
        return self.modseqs.get(uid)

    def vanished_since(self, modseq: int) -> list[int] | None:
        return self.modseqs.vanished_since(modseq)

    def highest_modseq(self) -> int:
        return self.modseqs.highest

    def _info_for(self, base: str, sub: str, filename: str, uid: int,
                  cached: MessageInfo | None, moved: dict[str, tuple[str, str]]
                  ) -> MessageInfo | None:
        recent = sub == "new" or uid in self.unclaimed
        _, info_letters = split_name(filename)
        flags = self.keywords.flags_of(info_letters)
        if (cached is not None and cached.uid == uid and cached.flags == flags
                and cached.recent == recent):
            return cached
        meta = self._meta.get(base)
        if meta is None:
            meta = self._read_meta(self.path / sub / filename, base)
            if meta is None:  # renamed by another program since the listing: find it
                found = self._find(base)
                if found is None:
                    return None  # expunged meanwhile
                moved[base] = found
                sub, filename = found
                recent = sub == "new" or uid in self.unclaimed
                flags = self.keywords.flags_of(split_name(filename)[1])
                meta = self._read_meta(self.path / sub / filename, base)
                if meta is None:
                    return None
        return MessageInfo(uid=uid, key=base, size=meta[0], flags=flags,
                           internaldate=meta[1], recent=recent)

    def _find(self, base: str) -> tuple[str, str] | None:
        for sub in ("cur", "new"):
            with contextlib.suppress(FileNotFoundError), os.scandir(self.path / sub) as it:
                for entry in it:
                    if split_name(entry.name)[0] == base:
                        return sub, entry.name
        return None

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
                meta = self._meta.get(base)
                try:  # (str paths: pathlib costs as much as the read of a 10 KB message)
                    return read_file(f"{self._dir}/{where[0]}/{where[1]}", meta[0] if meta else 0)
                except FileNotFoundError:
                    pass  # renamed (flags) or expunged by someone else: look again
            if attempt == 0:
                self.sync(force=True)
        raise KeyError(base)

    def _still_there(self, base: str) -> bool:
        """Whether the message's file is where this process last saw it: one access(F_OK)
        system call (a third of a stat(): no stat result to build, no exception), no read.
        The cache is this process's memory; another process may have expunged the message
        meanwhile (a session in another lab worker, Dovecot, mutt), and a copy in memory must
        not outlive the file: a session then gets what it gets when the file is read (POP3
        RETR: -ERR [SYS/TEMP]).  False also after a rename by another process (new flags):
        the caller then reads the file again, which finds its new name."""
        where = self.files.get(base)
        if where is None:
            return False
        return os.access(f"{self._dir}/{where[0]}/{where[1]}", os.F_OK, effective_ids=True)

    def cached_wire(self, base: str) -> bytes | None:
        """The message in wire form if it is in memory (and its file still there), else None:
        nothing is read (an event loop may call this; the cache's lock is only ever held for a
        dict operation)."""
        data = self.cache.get((self._dir, base))
        return data if data is not None and self._still_there(base) else None

    def read_wire(self, base: str) -> bytes:
        """The message in wire form (bare LF -> CRLF), from the cache when it is there;
        KeyError when the message is gone."""
        key = (self._dir, base)
        data = self.cache.get(key)
        if data is not None and not self._still_there(base):
            data = None
        if data is None:
            try:
                raw = self.read_raw(base)
            except KeyError:
                self.cache.discard(key)  # (removed by another process: the copy is garbage)
                raise
            if base in self._crlf:
                data = raw
            else:
                data = to_wire(raw)
                if data is raw:  # (to_wire returns its argument when there was nothing to change)
                    self._crlf.add(base)
            self.cache.put(key, data)
        return data

    # -- writing ---------------------------------------------------------------------
    def write_messages(self, entries: list[tuple[bytes, str, float | None]]) -> list[MessageInfo]:
        """Deliver several messages (data, info letters, internal date) all or none: each is
        written and fsync'd in tmp/, then all are published in one locked step (an IMAP
        MULTIAPPEND is atomic, RFC 4466 §2.7)."""
        staged: list[tuple[str, str, str, str, tuple[int, float]]] = []
        try:
            for data, letters, internaldate in entries:
                staged.append(self._write_tmp(data, letters, internaldate))
            infos, ticket = self._publish(staged)
        except BaseException:
            for tmp_path, *_ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
            raise
        if self.fsync:
            for sub in {item[1] for item in staged}:
                self.sync_dir(sub, ticket)
        return infos

    def write_each(self, messages: list[bytes]) -> list[MessageInfo | Exception]:
        """Deliver independent messages together (group commit of SMTP deliveries): each is
        written and fsync'd in tmp/ on its own (a failure costs that message only), then the
        written ones are published in one locked step (one uidlist update) and the directory
        is fsync'd once for all.  Returns each message's info, or the exception that kept it
        out; returns only when every delivered one is on disk."""
        results: list[MessageInfo | Exception] = []
        staged: list[tuple[str, str, str, str, tuple[int, float]]] = []
        for data in messages:
            try:
                staged.append(self._write_tmp(data, "", None))
                results.append(None)  # type: ignore[arg-type]  (filled in below)
            except Exception as exc:
                results.append(exc)
        if not staged:
            return results
        try:
            infos, ticket = self._publish(staged)
            if self.fsync:
                self.sync_dir("new", ticket)
        except Exception as exc:  # nothing of the batch is visible (``_publish``): each is told
            for tmp_path, *_ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
            infos = [exc] * len(staged)  # type: ignore[list-item]
        published = iter(infos)
        return [next(published) if r is None else r for r in results]

    def _write_tmp(self, data: bytes, info_letters: str, internaldate: float | None
                   ) -> tuple[str, str, str, str, tuple[int, float]]:
        """Write and fsync ``data`` in tmp/, stored with LF line ends (``to_disk``): the item
        ``_publish`` takes.  The name carries ",S=" (octets on disk) and ",W=" (octets on the
        wire, CRLF).  A large APPEND already spooled to disk (store/spool.py) is moved, not
        copied."""
        spooled = claim(data)
        if spooled is not None:
            base = unique_name(spooled.disk_size, spooled.wire_size)
            size = spooled.wire_size
        else:
            data = to_disk(data)
            size = wire_size(data)
            base = unique_name(len(data), size)
        tmp_path = f"{self._dir}/tmp/{base}"
        try:
            if spooled is not None:
                os.rename(spooled.path, tmp_path)  # same user tree, same file system
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CLOEXEC)
            else:
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        except FileNotFoundError:
            if spooled is not None:
                spooled.discard()
            raise MailboxNotFound(f"mailbox {self.name!r} of {self.user!r} does not exist") from None
        try:
            view = memoryview(data if spooled is None else b"")
            while view:
                view = view[os.write(fd, view):]
            if internaldate is not None:
                os.utime(fd, (internaldate, internaldate))
            if self.fsync:
                os.fsync(fd)
            mtime = os.fstat(fd).st_mtime
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise
        os.close(fd)
        sub = "cur" if info_letters else "new"
        filename = base + INFO_PREFIX + info_letters if info_letters else base
        return tmp_path, sub, filename, base, (size, mtime)

    def write_message(self, data: bytes, info_letters: str = "",
                      internaldate: float | None = None) -> MessageInfo:
        """Atomic Maildir delivery of ``data`` (one message; see ``_write_tmp``)."""
        return self.write_messages([(data, info_letters, internaldate)])[0]

    def _publish(self, items: list[tuple[str | Path, str, str, str, tuple[int, float]]]
                 ) -> tuple[list[MessageInfo], int]:
        """Rename complete files from tmp/ into new/ or cur/ and give them UIDs, in one
        locked step (so UIDs become visible in ascending order).  Returns the infos and
        the rename number to pass to ``sync_dir``."""
        out = []
        with self.lock:
            renamed: list[str] = []
            try:
                for tmp_path, sub, filename, base, meta in items:
                    final = f"{self._dir}/{sub}/{filename}"
                    os.rename(tmp_path, final)
                    renamed.append(final)
                    self._meta[base] = meta
                    self._renames += 1
                ul = self.uidlist
                with ul.locked():
                    if not ul.load():
                        ul.create()
                    uids = ul.assign([item[3] for item in items])
            except BaseException:  # a failed delivery leaves nothing visible
                for path in renamed:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                raise
            for (_, sub, filename, base, meta), uid in zip(items, uids):
                _, letters = split_name(filename)
                if sub != "new":
                    self.unclaimed.add(uid)  # new to every session, flags or not
                info = MessageInfo(uid=uid, key=base, size=meta[0],
                                   flags=self.keywords.flags_of(letters),
                                   internaldate=meta[1], recent=True)
                self.files[base] = (sub, filename)
                self.infos[uid] = info
                out.append(info)
            self.modseqs.load(ul.uidvalidity)
            self.modseqs.bump(uids)
            self.version += 1
            ticket = self._renames
        return out, ticket

    def sync_dir(self, sub: str, ticket: int) -> None:
        """Make the renames into ``sub`` up to number ``ticket`` durable (fsync the directory).

        Group commit: one fsync of a directory covers every rename made before it started,
        so concurrent deliveries share one instead of queueing for one each.
        """
        if self._synced.get(sub, 0) >= ticket:
            return
        with self._fsync_lock:
            if self._synced.get(sub, 0) >= ticket:
                return
            with self.lock:
                upto = self._renames
            fsync_dir(f"{self._dir}/{sub}")
            self._synced[sub] = max(self._synced.get(sub, 0), upto)

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
                        if sub == "new":  # leaves new/ before any session claimed it
                            self.unclaimed.add(uid)
                        new = MessageInfo(uid=uid, key=info.key, size=info.size,
                                          flags=self.keywords.flags_of(letters),
                                          internaldate=info.internaldate,
                                          recent=uid in self.unclaimed)
                        self.infos[uid] = new
                        if new.flags != info.flags:
                            self.modseqs.load(self.uidlist.uidvalidity)
                            self.modseqs.bump([uid])
                        self.version += 1
                        return new
                if attempt == 0:
                    self.sync(force=True)
        raise KeyError(uid)

    def change_flags(self, uid: int, add: Iterable[str] = (), remove: Iterable[str] = ()
                     ) -> MessageInfo:
        """Add and remove flags as one read-modify-write under the folder lock, starting
        from the flags on disk now (not from a session's snapshot): two sessions that
        change different flags of one message at the same time both keep their change
        (RFC 3501 §6.4.6 "+FLAGS ... Add the argument to the flags for the message")."""
        add, remove = set(add), set(remove)
        with self.lock:
            self.sync()
            info = self.infos.get(uid)
            if info is None:
                self.sync(force=True)
                info = self.infos.get(uid)
                if info is None:
                    raise KeyError(uid)
            low_remove = {flag.lower() for flag in remove}
            flags = {flag for flag in info.flags if flag.lower() not in low_remove} | add
            if flags == set(info.flags):
                return info
            return self.set_flags(uid, flags)

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
                self.unclaimed.discard(uid)
                self.infos.pop(uid, None)
                self.files.pop(base, None)
                self._meta.pop(base, None)
                self._crlf.discard(base)
                self.cache.discard((self._dir, base))
            if bases:
                with self.uidlist.locked():
                    self.uidlist.load()
                    self.uidlist.remove(bases)
                self.modseqs.load(self.uidlist.uidvalidity)
                self.modseqs.forget(removed)
                self.version += 1
        return removed

    def copy_from(self, source: "Folder", uids: list[int]) -> list[tuple[int, MessageInfo]]:
        """Copy messages of ``source`` into this folder with their flags and dates:
        [(source uid, new info)], leaving out messages that no longer exist.

        The files are hard-linked (copied where links are impossible) into our tmp/ while
        the source's lock is held, so no flag change can rename them away meanwhile; they
        are published (renamed, given UIDs) afterwards under our own lock only: a copy in
        the other direction at the same time cannot deadlock.
        """
        staged: list[tuple[int, MessageInfo, Path, str]] = []
        try:
            with source.lock:
                for uid in uids:
                    for attempt in range(2):
                        info = source.infos.get(uid)
                        src = source.path_of(info.key) if info is not None else None
                        if src is None:
                            break
                        try:
                            base, tmp_path = self._stage(src, info)
                        except FileNotFoundError:  # renamed by another program: look again
                            if attempt == 0:
                                source.sync(force=True)
                            continue
                        staged.append((uid, info, tmp_path, base))
                        break
            items = []
            for _, info, tmp_path, base in staged:
                letters = self.info_letters(info.flags)
                sub = "cur" if letters else "new"
                filename = base + INFO_PREFIX + letters if letters else base
                items.append((tmp_path, sub, filename, base, (info.size, info.internaldate)))
            published, ticket = self._publish(items) if items else ([], 0)
        except BaseException:
            for _, _, tmp_path, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_path)
            raise
        if self.fsync:
            for sub in {item[1] for item in items}:
                self.sync_dir(sub, ticket)
        return [(uid, info) for (uid, *_), info in zip(staged, published)]

    def _stage(self, src: Path, info: MessageInfo) -> tuple[str, Path]:
        """Put a copy of file ``src`` in our tmp/: (its unique name, its path)."""
        base = unique_name(os.stat(src).st_size, info.size)
        tmp_path = f"{self._dir}/tmp/{base}"
        try:
            os.link(src, tmp_path)  # same content, same mtime (INTERNALDATE)
        except FileNotFoundError:
            raise
        except OSError:  # no hard links here (another file system): copy the bytes
            data = src.read_bytes()
            with open(tmp_path, "xb") as f:
                f.write(data)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            os.utime(tmp_path, (info.internaldate, info.internaldate))
        return base, tmp_path

    def path_of(self, base: str) -> Path | None:
        where = self.files.get(base)
        return None if where is None else self.path / where[0] / where[1]

    def mark_seen_by_client(self, bases: set[str] | None = None) -> None:
        """Move files of new/ to cur/ (Maildir: the client has now seen them): all of
        them, or those whose unique name is in ``bases``."""
        with self.lock:
            changed = False
            for base, (sub, filename) in list(self.files.items()):
                if sub != "new" or (bases is not None and base not in bases):
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
            for uid in list(self.unclaimed):
                info = self.infos.get(uid)
                if info is None:
                    self.unclaimed.discard(uid)
                elif bases is None or info.key in bases:
                    self.unclaimed.discard(uid)
                    self.infos[uid] = MessageInfo(uid=uid, key=info.key, size=info.size,
                                                  flags=info.flags,
                                                  internaldate=info.internaldate, recent=False)
                    changed = True
            if changed:
                self.version += 1

    def close(self) -> None:
        self.uidlist.close()
