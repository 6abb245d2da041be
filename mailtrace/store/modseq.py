"""Mod-sequences of one Maildir (IMAP CONDSTORE, RFC 7162 §3).

RFC 7162 §3: "each message's metadata ... [has] a mod-sequence ... a 63-bit value that is
increased by the server whenever a metadata item associated with the message is changed"
and HIGHESTMODSEQ is "the highest mod-sequence value of all messages in the mailbox".  They
must survive a restart as UIDs do, so they are kept beside ``dovecot-uidlist`` in
``mailtrace-modseq``: a "V<uidvalidity> H<highest>" line, then "<uid> <modseq>" lines, written
through a temporary file and an atomic rename.  A new UIDVALIDITY starts them again.
A delivery or a flag change appends its "<uid> <modseq>" lines instead of rewriting the file
(a later line wins, and the highest value read raises H), so a delivery costs the same in a
mailbox of 10 messages or of 100,000; the file is rewritten whole when the appended lines
outnumber the messages, and at every expunge.
QRESYNC (RFC 7162 §3.2.5) also needs the mod-sequence at which each UID was expunged: kept as
"x<uid> <modseq>" lines, the newest ``MAX_VANISHED`` of them; ``floor`` says below which
mod-sequence that record is no longer complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

MODSEQ_NAME = "mailtrace-modseq"
MAX_VANISHED = 100_000  # expunged UIDs remembered (a bound on the file, not on correctness)
MIN_APPENDED = 1_000  # appended lines allowed before a rewrite, however small the mailbox


class ModSeqs:
    def __init__(self, directory: Path) -> None:
        self.path = directory / MODSEQ_NAME
        self.uidvalidity = 0
        self.highest = 1
        self.of: dict[int, int] = {}
        self.vanished: dict[int, int] = {}  # expunged uid -> mod-sequence of its expunge
        self.floor = 0  # expunges at or below this mod-sequence may be missing from ``vanished``
        self._appended = -1  # lines appended since the file was last written whole (-1: not on disk)

    def load(self, uidvalidity: int) -> None:
        """Read the file (once per UIDVALIDITY); a missing or foreign file starts afresh."""
        if uidvalidity == self.uidvalidity:
            return
        # built aside, then put in place: readers without the folder lock (Folder.modseq) never
        # see a half-read file
        highest, floor, of, vanished, appended = 1, 0, {}, {}, -1
        try:
            lines = self.path.read_text("utf-8").split("\n")
        except (FileNotFoundError, UnicodeDecodeError):
            lines = []
        if lines:
            lines.pop()  # "" after the last line end, or a line cut short by a crash: not read
        head = {f[:1]: f[1:] for f in (lines[0].split() if lines else [])}
        if head.get("V") == str(uidvalidity) and head.get("H", "").isdigit():
            highest = int(head["H"])
            floor = int(head["F"]) if head.get("F", "").isdigit() else 0
            for line in lines[1:]:
                if line.startswith("x"):
                    uid, _, value = line[1:].partition(" ")
                    if uid.isdigit() and value.isdigit():
                        vanished[int(uid)] = int(value)
                    continue
                uid, _, value = line.partition(" ")
                if uid.isdigit() and value.isdigit():
                    of[int(uid)] = int(value)
            highest = max(highest, max(of.values(), default=1), max(vanished.values(), default=1))
            appended = len(lines) - 1 - len(of) - len(vanished)  # lines overridden by later ones
        self.of, self.vanished, self.floor, self.highest = of, vanished, floor, highest
        self._appended, self.uidvalidity = appended, uidvalidity

    def get(self, uid: int) -> int:
        return self.of.get(uid, 1)

    def bump(self, uids: Iterable[int]) -> None:
        """``uids`` changed (new, flags changed): they get the next mod-sequence."""
        uids = list(uids)
        if uids:
            self.highest += 1
            for uid in uids:
                self.of[uid] = self.highest
            self._append("".join(f"{uid} {self.highest}\n" for uid in uids), len(uids))

    def forget(self, uids: Iterable[int]) -> None:
        """``uids`` were expunged: the mailbox changed (HIGHESTMODSEQ grows, RFC 7162 §3.1.2.1)."""
        uids = list(uids)
        if uids:
            self.highest += 1
            for uid in uids:
                self.of.pop(uid, None)
                self.vanished[uid] = self.highest
            if len(self.vanished) > MAX_VANISHED:
                for uid, value in sorted(self.vanished.items(), key=lambda kv: kv[1])[:len(self.vanished) - MAX_VANISHED]:
                    self.floor = max(self.floor, value)
                    del self.vanished[uid]
            self._save()

    def vanished_since(self, modseq: int) -> list[int] | None:
        """UIDs expunged after ``modseq``; None when the record does not reach back that far."""
        if modseq < self.floor:
            return None
        vanished = self.vanished.copy()  # (one step: a writer in another thread may be adding)
        return sorted(uid for uid, value in vanished.items() if value > modseq)

    def _append(self, lines: str, count: int) -> None:
        """Add ``lines`` at the end of the file, or write it whole (see the module's comment)."""
        if self._appended < 0 or self._appended + count > max(MIN_APPENDED, len(self.of)):
            self._save()
            return
        try:  # (os.open, not open(): three system calls instead of eight, once per delivery)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:  # the folder was deleted meanwhile
            return
        try:
            view = memoryview(lines.encode("utf-8"))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        self._appended += count

    def _save(self) -> None:
        body = "".join(f"{uid} {value}\n" for uid, value in sorted(self.of.items()))
        body += "".join(f"x{uid} {value}\n" for uid, value in sorted(self.vanished.items()))
        tmp = self.path.with_name(f"{MODSEQ_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(f"V{self.uidvalidity} H{self.highest} F{self.floor}\n{body}", "utf-8")
            os.replace(tmp, self.path)
            self._appended = 0
        except FileNotFoundError:  # the folder was deleted meanwhile
            pass
