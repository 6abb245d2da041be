"""The selected mailbox as one session sees it: message sequence numbers and pending updates.

Theory of operation.  RFC 3501 §2.3.1.2: "A relative position from 1 to the number of messages
in the mailbox.  This position MUST be ordered by ascending unique identifier."  Each session
keeps its own list of UIDs: another session's EXPUNGE removes a message from the store at
once, but this session's sequence numbers change only when it is told with an untagged
EXPUNGE (§7.4.1), and "it is NOT permitted to send an EXPUNGE response ... while responding to
a FETCH, STORE, or SEARCH command".  New messages are announced with EXISTS and RECENT
(§7.3.1, §7.3.2); flag changes made elsewhere with an untagged FETCH (§7.4.2).
"""

from __future__ import annotations

import bisect
from typing import Callable

from mailtrace.protocols.imap.lexer import ParseError
from mailtrace.protocols.imap.parser import SYSTEM_FLAGS, SequenceSet
from mailtrace.store.model import MessageInfo, StoreError


class MailboxView:
    def __init__(self, box, readonly: bool, unwatch: Callable[[], None] | None = None) -> None:
        self.box = box
        self.readonly = readonly
        self.unwatch = unwatch
        self.dirty = False
        box.refresh()
        msgs = box.messages()
        self.uids: list[int] = [m.uid for m in msgs]
        self.flags: dict[int, frozenset] = {m.uid: frozenset(m.flags) for m in msgs}
        self.recent: set[int] = {m.uid for m in msgs if m.recent}
        self.last_uid = self.uids[-1] if self.uids else 0
        # Keywords announced in the last untagged FLAGS (RFC 3501 §7.2.6).
        self.keywords: set[str] = {f for fl in self.flags.values() for f in fl if not f.startswith("\\")}
        if self.recent and not readonly:
            box.mark_seen_by_client()  # \Recent belongs to this session alone (§2.3.2)

    def send_flags(self, conn, permanent: bool = True) -> None:
        """Untagged FLAGS and OK [PERMANENTFLAGS] (RFC 3501 §6.3.1, §7.2.6)."""
        from mailtrace.protocols.imap.fetch import flag_list

        conn.untagged(b"FLAGS " + flag_list(list(SYSTEM_FLAGS) + sorted(self.keywords)), "FLAGS")
        if permanent:
            self.send_permanent_flags(conn)

    def send_permanent_flags(self, conn) -> None:
        keywords = sorted(self.keywords)
        permanent = "()" if self.readonly else "(" + " ".join(list(SYSTEM_FLAGS) + keywords + ["\\*"]) + ")"
        conn.untagged_status("OK", "flags the client can change permanently", code=f"PERMANENTFLAGS {permanent}")

    def announce_keywords(self, conn, flags) -> None:
        """A keyword comes into use that the last FLAGS did not list: send FLAGS again first
        (RFC 3501 §7.2.6: FLAGS lists "the flags that are applicable for this mailbox")."""
        new = {f for f in flags if not f.startswith("\\")} - self.keywords
        if new:
            self.keywords |= new
            self.send_flags(conn)

    def release(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def resolve(self, seqset: SequenceSet, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, uid) of every message in ``seqset`` (a UID set if ``uid``)."""
        if uid:
            largest = self.uids[-1] if self.uids else 0
            ranges = seqset.resolve(largest)
            return [(i + 1, u) for i, u in enumerate(self.uids) if any(lo <= u <= hi for lo, hi in ranges)]
        n = len(self.uids)
        picked: set[int] = set()
        for lo, hi in seqset.resolve(n):
            if hi > n or lo < 1:
                raise ParseError(f'no message {hi if hi > n else lo} in "{seqset.text}": the mailbox has {n} '
                                 f'message{"s" if n != 1 else ""}')
            picked.update(range(lo, hi + 1))
        return [(s, self.uids[s - 1]) for s in sorted(picked)]

    def forget(self, uid: int) -> int:
        """This session expunged ``uid``: drop it and return its old sequence number."""
        seq = self.seq_of(uid)
        if seq:
            del self.uids[seq - 1]
        self.flags.pop(uid, None)
        self.recent.discard(uid)
        return seq

    def look(self) -> dict[int, MessageInfo] | Exception:
        """The mailbox as it is now on disk (a store job: run in a worker thread, it may wait
        for the uidlist lock); the error, if it went away."""
        try:
            self.box.refresh()
            current = {m.uid: m for m in self.box.messages()}
            if not self.readonly and any(m.recent for u, m in current.items() if u > self.last_uid):
                self.box.mark_seen_by_client()  # new/ -> cur/: \Recent is this session's (§2.3.2)
            return current
        except (OSError, ValueError, LookupError, StoreError) as exc:
            return exc

    def update(self, conn, current: dict[int, MessageInfo], allow_expunge: bool) -> None:
        """Send the untagged updates for changes made by others (RFC 3501 §5.2, §7.3, §7.4),
        from what ``look()`` saw."""
        if allow_expunge:
            gone = []
            for i in range(len(self.uids) - 1, -1, -1):
                u = self.uids[i]
                if u not in current:
                    del self.uids[i]
                    self.flags.pop(u, None)
                    self.recent.discard(u)
                    gone.append((i + 1, u))
            conn.report_expunged(gone)
        else:
            self.dirty = any(u not in current for u in self.uids)  # report them later
        new = sorted(u for u in current if u > self.last_uid)
        if new:
            for u in new:
                m = current[u]
                self.uids.append(u)
                self.flags[u] = frozenset(m.flags)
                if m.recent:
                    self.recent.add(u)
            self.last_uid = new[-1]
            self.announce_keywords(conn, {f for u in new for f in current[u].flags})
            conn.untagged(b"%d EXISTS" % len(self.uids), "EXISTS")
            conn.untagged(b"%d RECENT" % len(self.recent), "RECENT")
        from mailtrace.protocols.imap.fetch import all_flags, flag_list

        for i, u in enumerate(self.uids):
            m = current.get(u)
            if m is not None and frozenset(m.flags) != self.flags.get(u):
                self.announce_keywords(conn, m.flags)
                self.flags[u] = frozenset(m.flags)
                # RFC 7162 §3.2: once CONDSTORE is on, such FETCH responses carry MODSEQ
                modseq = b" MODSEQ (%d)" % self.box.modseq(u) if getattr(conn, "condstore", False) else b""
                conn.untagged(b"%d FETCH (UID %d FLAGS %s%s)" % (i + 1, u, flag_list(all_flags(m.flags, u in self.recent)),
                                                                 modseq), "FETCH")
