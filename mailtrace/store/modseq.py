"""Mod-sequences of one Maildir (IMAP CONDSTORE, RFC 7162 §3).

RFC 7162 §3: "each message's metadata ... [has] a mod-sequence ... a 63-bit value that is
increased by the server whenever a metadata item associated with the message is changed"
and HIGHESTMODSEQ is "the highest mod-sequence value of all messages in the mailbox".  They
must survive a restart as UIDs do, so they are kept beside ``dovecot-uidlist`` in
``mailtrace-modseq``: a "V<uidvalidity> H<highest>" line, then "<uid> <modseq>" lines, written
through a temporary file and an atomic rename.  A new UIDVALIDITY starts them again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

MODSEQ_NAME = "mailtrace-modseq"


class ModSeqs:
    def __init__(self, directory: Path) -> None:
        self.path = directory / MODSEQ_NAME
        self.uidvalidity = 0
        self.highest = 1
        self.of: dict[int, int] = {}

    def load(self, uidvalidity: int) -> None:
        """Read the file (once per UIDVALIDITY); a missing or foreign file starts afresh."""
        if uidvalidity == self.uidvalidity:
            return
        self.uidvalidity, self.highest, self.of = uidvalidity, 1, {}
        try:
            lines = self.path.read_text("ascii").splitlines()
        except (FileNotFoundError, UnicodeDecodeError):
            return
        head = {f[:1]: f[1:] for f in (lines[0].split() if lines else [])}
        if head.get("V") != str(uidvalidity) or not head.get("H", "").isdigit():
            return
        self.highest = int(head["H"])
        for line in lines[1:]:
            uid, _, value = line.partition(" ")
            if uid.isdigit() and value.isdigit():
                self.of[int(uid)] = int(value)

    def get(self, uid: int) -> int:
        return self.of.get(uid, 1)

    def bump(self, uids: Iterable[int]) -> None:
        """``uids`` changed (new, flags changed): they get the next mod-sequence."""
        uids = list(uids)
        if uids:
            self.highest += 1
            for uid in uids:
                self.of[uid] = self.highest
            self._save()

    def forget(self, uids: Iterable[int]) -> None:
        """``uids`` were expunged: the mailbox changed (HIGHESTMODSEQ grows, RFC 7162 §3.1.2.1)."""
        uids = [uid for uid in uids if uid in self.of] or list(uids)
        if uids:
            self.highest += 1
            for uid in uids:
                self.of.pop(uid, None)
            self._save()

    def _save(self) -> None:
        body = "".join(f"{uid} {value}\n" for uid, value in sorted(self.of.items()))
        tmp = self.path.with_name(f"{MODSEQ_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(f"V{self.uidvalidity} H{self.highest}\n{body}", "ascii")
            os.replace(tmp, self.path)
        except FileNotFoundError:  # the folder was deleted meanwhile
            pass
