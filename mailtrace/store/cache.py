"""A small LRU cache of messages in wire form.

A Maildir file's content never changes once it is in new/ or cur/ (the Maildir
specification: a reader may rename it to change flags, nobody rewrites it), and its unique
name is never reused, so the wire form of a message can be kept by unique name and never goes
stale: POP3 RETR and IMAP FETCH of the same messages by many sessions (a class of students, a
benchmark) then cost no file reads.  What a copy can outlive is the file itself: another
process (another ``lab --workers`` worker, Dovecot, mutt) may expunge the message, and only
this process's own expunges discard the copy here.  So the store checks that the file is still
there (one access() call, store/folder.py ``Folder.cached_wire``) before it serves a copy.

One cache serves every Maildir of the process (``shared()``; keys name the folder and the
message), within one budget: a budget per mailbox let a lab with 100 users of 1 MB each keep
100 MB of message copies (Dovecot keeps none: the kernel's page cache holds the files).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

CACHE_BUDGET = 16 * 1024 * 1024  # octets kept for all the mailboxes of the process
CACHE_MAX_MESSAGE = 1024 * 1024  # larger messages are always read from the file


class WireCache:
    def __init__(self, budget: int = CACHE_BUDGET, max_item: int = CACHE_MAX_MESSAGE) -> None:
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._budget = budget
        self._max_item = max_item
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        """The cached bytes, or None.  Takes no lock: an event loop calls this, and must never
        wait for a store thread that holds the lock while it waits for the interpreter lock.
        ``OrderedDict.get`` and ``move_to_end`` are each one atomic step (C, under the GIL); a
        ``put`` may evict the key between the two, which only makes the second a no-op."""
        items = self._items
        data = items.get(key)
        if data is not None:
            try:
                items.move_to_end(key)
            except KeyError:  # evicted meanwhile by another thread's put
                pass
        return data

    def put(self, key: Hashable, data: bytes) -> None:
        if len(data) > self._max_item:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = data
            self._size += len(data)
            while self._size > self._budget:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)


_shared: WireCache | None = None
_shared_lock = threading.Lock()


def shared() -> WireCache:
    """The process's one cache (made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WireCache()
        return _shared
