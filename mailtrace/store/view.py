"""A session's view of one mailbox (what ``MaildirStore.mailbox`` returns).

RFC 3501 §2.3.1.2: message sequence numbers change only when the session is told (untagged
EXPUNGE, EXISTS), so each session needs the mailbox *as it last looked at it*, not as it is
now.  A ``Mailbox`` is that snapshot, taken from the folder's shared cache by ``refresh()``;
operations go through to the shared folder (and so to disk) at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from mailtrace.store.folder import Folder
from mailtrace.store.model import MessageInfo

if TYPE_CHECKING:
    from mailtrace.store.maildir import MaildirStore


class Mailbox:
    """One session's view of a mailbox (see the module docstring).

    ``messages()`` and ``get()`` answer as of the last ``refresh()``, except that this
    view's own ``set_flags`` and ``expunge`` show at once.
    """

    def __init__(self, store: "MaildirStore", folder: Folder) -> None:
        self._store = store
        self._folder = folder
        self.user = folder.user
        self.name = folder.name
        self.path = folder.path  # the Maildir folder on disk
        self._infos: dict[int, MessageInfo] = {}
        self._sorted: list[int] | None = None
        self._version = -1
        self.uidvalidity = 0
        self.uidnext = 1
        self.refresh()

    def refresh(self) -> None:
        folder = self._folder
        folder.sync()
        with folder.lock:
            if folder.version == self._version:
                return  # nothing changed since this view last looked
            self._version = folder.version
            self._infos = dict(folder.infos)
            self.uidvalidity = folder.uidlist.uidvalidity
            self.uidnext = folder.uidlist.next_uid
        self._sorted = None

    def _uids(self) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(self._infos)
        return self._sorted

    def messages(self) -> list[MessageInfo]:
        infos = self._infos
        return [infos[uid] for uid in self._uids()]

    def get(self, uid: int) -> MessageInfo:
        return self._infos[uid]

    def read(self, uid: int) -> bytes:
        """The message in wire form: every bare LF sent as CRLF (len == info.size)."""
        return self._folder.read_wire(self._infos[uid].key)

    def cached(self, uid: int) -> bytes | None:
        """What ``read`` would return, if the message is in memory (the process's cache of
        messages, store/cache.py) and its file still there (another process may have removed
        it); None otherwise, or when the uid is not in this view.  Reads no file (one access()
        call): a server may call it on its event loop, and call ``read`` in a store job when it
        says None."""
        info = self._infos.get(uid)
        return None if info is None else self._folder.cached_wire(info.key)

    def set_flags(self, uid: int, flags: Iterable[str]) -> MessageInfo:
        old = self._infos[uid]
        new = self._folder.set_flags(uid, flags)
        if new.recent != old.recent:  # \Recent belongs to the session that saw it
            new = MessageInfo(uid=new.uid, key=new.key, size=new.size, flags=new.flags,
                              internaldate=new.internaldate, recent=old.recent)
        changed = new.flags != old.flags
        self._infos[uid] = new
        if changed:
            self._store._notify(self.user, self.name)
        return new

    def change_flags(self, uid: int, add: Iterable[str] = (), remove: Iterable[str] = ()
                     ) -> MessageInfo:
        """+FLAGS / -FLAGS: an atomic change of the current flags (``Folder.change_flags``)."""
        old = self._infos[uid]
        new = self._folder.change_flags(uid, add, remove)
        if new.recent != old.recent:
            new = MessageInfo(uid=new.uid, key=new.key, size=new.size, flags=new.flags,
                              internaldate=new.internaldate, recent=old.recent)
        changed = new.flags != old.flags
        self._infos[uid] = new
        if changed:
            self._store._notify(self.user, self.name)
        return new

    def modseq(self, uid: int) -> int:
        """The message's current mod-sequence (RFC 7162 §3), whatever the snapshot says."""
        return self._folder.modseq(uid)

    def highest_modseq(self) -> int:
        return self._folder.highest_modseq()

    def vanished_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged after ``modseq`` (QRESYNC); None when that is too long ago to know."""
        return self._folder.vanished_since(modseq)

    def append(self, data: bytes, flags: Iterable[str] = (),
               internaldate: float | None = None) -> MessageInfo:
        letters = self._folder.info_letters(list(flags)) if flags else ""
        info = self._folder.write_message(bytes(data), letters, internaldate)
        self._store._notify(self.user, self.name)
        return info

    def append_many(self, messages: list[tuple[bytes, Iterable[str], float | None]]) -> list[MessageInfo]:
        """Append (data, flags, internal date) messages all or none (IMAP MULTIAPPEND)."""
        entries = [(bytes(data), self._folder.info_letters(list(flags)) if flags else "", date)
                   for data, flags, date in messages]
        infos = self._folder.write_messages(entries)
        self._store._notify(self.user, self.name)
        return infos

    def expunge(self, uids: Iterable[int]) -> list[int]:
        removed = self._folder.expunge(uid for uid in uids if uid in self._infos)
        for uid in removed:
            self._infos.pop(uid, None)
        if removed:
            self._sorted = None
            self._store._notify(self.user, self.name)
        return removed

    def copy(self, uids: Iterable[int], dest: "Mailbox") -> list[tuple[int, int]]:
        """Copy messages into ``dest``: [(uid here, uid there)], in order; messages that no
        longer exist are left out."""
        wanted = [uid for uid in dict.fromkeys(uids) if uid in self._infos]
        pairs = [(old, new.uid) for old, new in dest._folder.copy_from(self._folder, wanted)]
        if pairs:
            self._store._notify(dest.user, dest.name)
        return pairs

    def mark_seen_by_client(self, uids: Iterable[int] | None = None) -> None:
        """Move new/ files to cur/: all of them, or only ``uids`` (those this session has
        reported as \\Recent, so a message delivered meanwhile stays recent for the next
        session to see, RFC 3501 §2.3.2)."""
        if uids is None:
            self._folder.mark_seen_by_client()
        else:
            self._folder.mark_seen_by_client(
                {self._infos[uid].key for uid in uids if uid in self._infos})

    def __repr__(self) -> str:
        return f"<Mailbox {self.user}:{self.name} {len(self._infos)} messages>"
