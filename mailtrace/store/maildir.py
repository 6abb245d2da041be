"""The Maildir store shared by the SMTP, POP3 and IMAP lab servers.

Theory of operation.  Each lab user has a Maildir++ tree under the store root
(``<lab dir>/mail/<user>/``): the user's INBOX is that Maildir and every other mailbox is a
sibling ``.Name`` Maildir (see ``names``).  The same tree is readable by mutt and served by
Dovecot (``mail_location = maildir:<lab dir>/mail/%u``), and mailtrace reads what they write:

* delivery is the Maildir protocol: write to tmp/, fsync, rename into new/, fsync new/
  (``folder``); RFC 5321 §4.1.1.4: "the receiver MUST send a 250 OK reply only if [it]
  has taken responsibility for the message", so ``deliver`` returns only once the message
  is on disk;
* flags live in the file name's info (":2,FRS", ``flags``), keywords in ``dovecot-keywords``;
* UIDs and UIDVALIDITY (RFC 3501 §2.3.1.1) live in Dovecot's ``dovecot-uidlist`` (``uidlist``),
  so both servers number the messages alike and the numbers survive restarts;
* the POP3 maildrop lock (RFC 1939 §8: "the POP3 server ... acquires an exclusive-access
  lock on the maildrop") is a per-user ``fcntl`` lock plus an in-process table.

``MaildirStore`` is thread-safe: the SMTP server delivers from worker threads while POP3 and
IMAP sessions read.  ``store.mailbox(user, name)`` returns a per-session *view* (``Mailbox``):
its ``messages()`` stay as they were at its last ``refresh()``, so an IMAP session can
announce changes (EXISTS, EXPUNGE) when the protocol allows.  ``watch`` calls back after any
change to a mailbox, made in this process (at once) or by another program (noticed by a
poller thread within ``POLL_INTERVAL``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import shutil
import threading
from pathlib import Path
from typing import Callable, Iterable

from mailtrace.store.files import clean_tmp, make_maildir, unique_name
from mailtrace.store.folder import Folder
from mailtrace.store.view import Mailbox
from mailtrace.store.model import (InvalidMailboxName, MailboxExists, MailboxNotFound,
                                   MessageInfo, StoreError)
from mailtrace.store.names import (HIERARCHY_DELIMITER, INBOX, canonical_mailbox,
                                   folder_dirname, mailbox_from_dirname, validate_user)
from mailtrace.store import subscriptions as subs

__all__ = ["MaildirStore", "Mailbox", "MessageInfo", "MaildropLock", "MailboxNotFound",
           "MailboxExists", "InvalidMailboxName", "StoreError", "INBOX"]

MAILDROP_LOCK_NAME = "mailtrace-maildrop.lock"
POLL_INTERVAL = 0.5  # seconds between checks for changes made by other programs


class MaildropLock:
    """An exclusive POP3 maildrop lock (RFC 1939 §8); ``release()`` or use ``with``."""

    def __init__(self, store: "MaildirStore", user: str, fd: int) -> None:
        self._store = store
        self.user = user
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        with self._store._lock:
            if self._fd is None:
                return
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            if self._store._maildrops.get(self.user) is self:
                del self._store._maildrops[self.user]

    def __enter__(self) -> "MaildropLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MaildirStore:
    HIERARCHY_DELIMITER = HIERARCHY_DELIMITER

    def __init__(self, root: Path, users: dict[str, str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.users = users  # shared with the Lab: users added later are served too
        self.fsync = fsync
        self._lock = threading.RLock()
        self._folders: dict[tuple[str, str], Folder] = {}
        self._watchers: dict[tuple[str, str], list[Callable[[], None]]] = {}
        self._maildrops: dict[str, MaildropLock] = {}
        self._ready_users: set[str] = set()
        self._poller: threading.Thread | None = None
        # Called (from any thread) with (user, mailbox) after a change made through this store:
        # a lab worker relays it to the other workers' stores (servers/workers.py).
        self.on_change: Callable[[str, str], None] | None = None
        self._stop = threading.Event()
        self.root.mkdir(parents=True, exist_ok=True)
        for user in list(users):
            try:
                self._user_dir(user)
            except InvalidMailboxName:
                pass  # refused later, by name, when someone uses it
        self.clean_stale_tmp()

    def clean_stale_tmp(self, now: float | None = None) -> list[str]:
        """Remove what interrupted deliveries left in the users' tmp/ directories (older than
        36 hours, the Maildir convention; ``files.clean_tmp``).  Done when the store opens."""
        removed = []
        for user in list(self.users):
            if not self.has_user(user):
                continue
            user_dir = self.root / user
            maildirs = [user_dir]
            with contextlib.suppress(OSError), os.scandir(user_dir) as it:
                maildirs += [Path(e.path) for e in it
                             if mailbox_from_dirname(e.name) is not None and e.is_dir()]
            for maildir in maildirs:
                removed += clean_tmp(maildir, now)
        return removed

    # -- users -----------------------------------------------------------------------
    def has_user(self, user: str) -> bool:
        try:
            validate_user(user)
        except InvalidMailboxName:
            return False
        return user in self.users

    def check_password(self, user: str, password: str | bytes) -> bool:
        expected = self.users.get(user) if self.has_user(user) else None
        given = (password if isinstance(password, bytes)
                 else password.encode("utf-8", "surrogatepass"))
        if expected is None:
            hmac.compare_digest(given, given)  # same work either way (no user oracle)
            return False
        return hmac.compare_digest(given, expected.encode("utf-8", "surrogatepass"))

    def password(self, user: str) -> str | None:
        return self.users.get(user) if self.has_user(user) else None

    def _user_dir(self, user: str) -> Path:
        """The user's Maildir root, created on first use; MailboxNotFound for strangers."""
        validate_user(user)
        if user not in self.users:
            raise MailboxNotFound(f"no such user {user!r}")
        if user not in self._ready_users:
            make_maildir(self.root / user, marker=False)
            self._ready_users.add(user)
        return self.root / user

    # -- folders ---------------------------------------------------------------------
    def _folder(self, user: str, name: str) -> Folder:
        name = INBOX if name == INBOX else canonical_mailbox(name)
        key = (user, name)
        folder = self._folders.get(key)  # the delivery path: a folder already open, its user's Maildir made
        if folder is not None and user in self._ready_users:
            return folder
        user_dir = self._user_dir(user)
        with self._lock:
            folder = self._folders.get(key)
            if folder is None:
                path = user_dir / folder_dirname(name) if name != INBOX else user_dir
                if name != INBOX and not (path / "cur").is_dir():
                    raise MailboxNotFound(f"no mailbox {name!r}")
                folder = Folder(user, name, path, user_dir, fsync=self.fsync)
                self._folders[key] = folder
        return folder

    def _forget(self, user: str, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                folder = self._folders.pop((user, name), None)
                if folder is not None:
                    folder.close()

    def mailbox(self, user: str, name: str = INBOX) -> "Mailbox":
        """A new view of ``user``'s mailbox ``name`` (refreshed); MailboxNotFound if none."""
        folder = self._folder(user, name)
        if not folder.exists():
            self._forget(user, [folder.name])
            if folder.name != INBOX:
                raise MailboxNotFound(f"no mailbox {folder.name!r}")
            with self._lock:  # INBOX always exists: remake a Maildir removed under us
                self._ready_users.discard(user)
            folder = self._folder(user, name)
        return Mailbox(self, folder)

    def deliver(self, user: str, message: bytes, mailbox: str = INBOX) -> MessageInfo:
        """Store ``message`` (exactly these bytes) in ``user``'s ``mailbox``; returns once
        it is on disk (fsync'd file and directory).  MailboxNotFound for an unknown user or
        mailbox; OSError (disk full, ...) when it could not be stored, and then nothing of it
        is visible.  Thread-safe; the mailbox's watchers are called afterwards."""
        data = bytes(message)
        for attempt in range(2):
            folder = self._folder(user, mailbox)
            try:
                info = folder.write_message(data)
                break
            except MailboxNotFound:
                self._forget(user, [folder.name])
                if folder.name != INBOX or attempt:
                    raise
                # The user's Maildir was removed under us: INBOX always exists, remake it.
                with self._lock:
                    self._ready_users.discard(user)
        self._notify(user, folder.name)
        return info

    def deliver_many(self, items: list[tuple[str, bytes]]) -> list[MessageInfo | Exception]:
        """``deliver(user, message)`` for each (user, message) of ``items``, as a group commit:
        the messages of one user share one uidlist update and one directory fsync
        (``Folder.write_each``).  Returns each one's info or the exception that kept it out
        (it is then not visible); returns only when every delivered one is on disk."""
        results: list[MessageInfo | Exception | None] = [None] * len(items)
        by_user: dict[str, list[int]] = {}
        for i, (user, _) in enumerate(items):
            by_user.setdefault(user, []).append(i)
        for user, indexes in by_user.items():
            try:
                folder = self._folder(user, INBOX)
                got = folder.write_each([bytes(items[i][1]) for i in indexes])
            except Exception as exc:  # an unknown user, or the Maildir removed under us
                got = [exc] * len(indexes)
            for i, result in zip(indexes, got):
                if isinstance(result, MailboxNotFound):
                    try:  # one at a time: ``deliver`` remakes an INBOX removed under us
                        result = self.deliver(user, items[i][1])
                    except Exception as exc:
                        result = exc
                results[i] = result
            if any(not isinstance(results[i], Exception) for i in indexes):
                self._notify(user, INBOX)
        return results  # type: ignore[return-value]

    def spool(self, user: str):
        """A ``store.spool.Spool`` in ``user``'s tmp/: a large incoming message written as it
        arrives; ``finish()`` gives the token to pass to ``deliver``/``Mailbox.append``."""
        from mailtrace.store.spool import Spool

        return Spool(self._user_dir(user) / "tmp")

    def list_mailboxes(self, user: str) -> list[str]:
        """"INBOX" and the user's other mailboxes, sorted ("Sent", "Work.Sub", ...)."""
        user_dir = self._user_dir(user)
        names = []
        with os.scandir(user_dir) as it:
            for entry in it:
                name = mailbox_from_dirname(entry.name)
                if name is not None and entry.is_dir() and os.path.isdir(
                        os.path.join(entry.path, "cur")):
                    names.append(name)
        return [INBOX, *sorted(names)]

    def create_mailbox(self, user: str, name: str) -> None:
        """RFC 3501 §6.3.3.  Superior names are not created: in Maildir++ a folder needs no
        parent (LIST shows missing parents as \\Noselect, as Dovecot does)."""
        name = canonical_mailbox(name)
        user_dir = self._user_dir(user)
        if name == INBOX:
            raise MailboxExists("INBOX always exists")
        path = user_dir / folder_dirname(name)
        with self._lock:
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                raise MailboxExists(f"mailbox {name!r} exists") from None
            make_maildir(path, marker=True)
            self._forget(user, [name])

    def delete_mailbox(self, user: str, name: str) -> None:
        """RFC 3501 §6.3.4: the mailbox and its messages; its inferiors stay."""
        name = canonical_mailbox(name)
        user_dir = self._user_dir(user)
        if name == INBOX:
            raise InvalidMailboxName("INBOX cannot be deleted (RFC 3501 §6.3.4)")
        path = user_dir / folder_dirname(name)
        with self._lock:
            if not (path / "cur").is_dir():
                raise MailboxNotFound(f"no mailbox {name!r}")
            # Out of sight first (one atomic rename), then removed at leisure.
            trash = user_dir / "tmp" / ("deleted-" + unique_name(0, 0))
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._forget(user, [name])
        self._notify(user, name)

    def rename_mailbox(self, user: str, old: str, new: str) -> None:
        """RFC 3501 §6.3.5, with its inferiors; UIDs and UIDVALIDITY move along (as in
        Dovecot).  Renaming INBOX moves its messages into a new mailbox."""
        old, new = canonical_mailbox(old), canonical_mailbox(new)
        user_dir = self._user_dir(user)
        if new == INBOX or (new + HIERARCHY_DELIMITER).startswith(old + HIERARCHY_DELIMITER):
            raise InvalidMailboxName(f"cannot rename {old!r} to {new!r}")
        if old == INBOX:  # RFC 3501 §6.3.5: moves INBOX's messages, leaves INBOX empty
            self._rename_inbox(user, new)
            return
        with self._lock:
            if not (user_dir / folder_dirname(old) / "cur").is_dir():
                raise MailboxNotFound(f"no mailbox {old!r}")
            # RFC 3501 §6.3.5: "all hierarchical names under it are renamed as well".
            moves = [(old, new)]
            for name in self.list_mailboxes(user):
                if name.startswith(old + HIERARCHY_DELIMITER):
                    moves.append((name, new + name[len(old):]))
            for _, target in moves:
                canonical_mailbox(target)  # still a valid (not too long) name
                if (user_dir / folder_dirname(target)).exists():
                    raise MailboxExists(f"mailbox {target!r} exists")
            for source, target in moves:
                os.rename(user_dir / folder_dirname(source), user_dir / folder_dirname(target))
            self._forget(user, [name for move in moves for name in move])
        for source, target in moves:
            self._notify(user, source)
            self._notify(user, target)

    def _rename_inbox(self, user: str, new: str) -> None:
        self.create_mailbox(user, new)
        inbox = self.mailbox(user, INBOX)
        uids = [info.uid for info in inbox.messages()]
        inbox.copy(uids, self.mailbox(user, new))
        inbox.expunge(uids)

    # -- subscriptions (RFC 3501 §6.3.6, §6.3.7) ---------------------------------------
    def subscriptions(self, user: str) -> list[str]:
        return subs.read(self._user_dir(user))

    def subscribe(self, user: str, name: str) -> None:
        name = canonical_mailbox(name)
        user_dir = self._user_dir(user)
        with self._lock:
            names = subs.read(user_dir)
            if name not in names:
                subs.write(user_dir, [*names, name])

    def unsubscribe(self, user: str, name: str) -> None:
        name = canonical_mailbox(name)
        user_dir = self._user_dir(user)
        with self._lock:
            names = subs.read(user_dir)
            if name not in names:
                raise MailboxNotFound(f"{name!r} is not subscribed")
            subs.write(user_dir, [n for n in names if n != name])

    # -- POP3 maildrop lock ----------------------------------------------------------
    def lock_maildrop(self, user: str) -> MaildropLock | None:
        """The POP3 exclusive maildrop lock, or None while another session (in this
        process or another) holds it."""
        user_dir = self._user_dir(user)
        with self._lock:
            if user in self._maildrops:
                return None
            fd = os.open(user_dir / MAILDROP_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            lock = MaildropLock(self, user, fd)
            self._maildrops[user] = lock
            return lock

    # -- change notification -----------------------------------------------------------
    def watch(self, user: str, mailbox: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from any thread) after each change to the mailbox: at once
        for changes made through this store, within ``POLL_INTERVAL`` for changes made by
        other programs.  Returns the function that stops it."""
        key = (validate_user(user), canonical_mailbox(mailbox))
        with self._lock:
            self._watchers.setdefault(key, []).append(callback)
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="maildir-poller",
                                                daemon=True)
                self._poller.start()

        def unwatch() -> None:
            with self._lock:
                callbacks = self._watchers.get(key, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._watchers.pop(key, None)

        return unwatch

    def _notify(self, user: str, name: str) -> None:
        """A change made through this store: tell its watchers and ``on_change``."""
        self.notify_watchers(user, name)
        if self.on_change is not None:
            self.on_change(user, name)

    def notify_watchers(self, user: str, name: str) -> None:
        """Call the mailbox's watchers (a change seen by the poller, or relayed from another
        lab worker's store)."""
        with self._lock:
            callbacks = list(self._watchers.get((user, name), ()))
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a watcher's bug must not break a delivery
                pass

    def _poll(self) -> None:
        """Notice changes made by other programs (Dovecot, mutt, another mailtrace)."""
        seen: dict[tuple[str, str], tuple] = {}
        while not self._stop.wait(POLL_INTERVAL):
            with self._lock:
                keys = list(self._watchers)
            for key in keys:
                try:
                    folder = self._folder(*key)
                except StoreError:
                    continue
                signature = folder.signature()
                if key in seen and seen[key] != signature:
                    self.notify_watchers(*key)
                seen[key] = signature
            for key in list(seen):
                if key not in keys:
                    del seen[key]

    def close(self) -> None:
        """Stop the poller and close the lock files (the store is unusable afterwards)."""
        self._stop.set()
        with self._lock:
            for folder in self._folders.values():
                folder.close()
            self._folders.clear()
            for lock in list(self._maildrops.values()):
                lock.release()
