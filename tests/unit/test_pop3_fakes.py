"""A tiny in-memory store with the MaildirStore API subset POP3 uses (unit tests of the core)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from mailtrace.store.model import MailboxNotFound  # the real store's error, as the core catches it


@dataclass(frozen=True)
class Info:
    uid: int
    key: str
    size: int


class FakeLock:
    def __init__(self, store: "FakeStore", user: str) -> None:
        self.store, self.user, self.released = store, user, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.store.locked.discard(self.user)


class FakeMailbox:
    uidvalidity = 1234

    def __init__(self, store: "FakeStore", user: str) -> None:
        self.store, self.user = store, user

    def refresh(self) -> None:
        pass

    def messages(self) -> list[Info]:
        data = self.store.mail.get(self.user, {})
        return [Info(uid, f"k{uid}", len(data[uid])) for uid in sorted(data)]

    def read(self, uid: int) -> bytes:
        return self.store.mail[self.user][uid]

    def expunge(self, uids) -> list[int]:
        box = self.store.mail[self.user]
        removed = [u for u in uids if box.pop(u, None) is not None]
        self.store.expunged += removed
        return removed


class FakeStore:
    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users if users is not None else {"alice": "secret", "bob": "b o\"b"}
        self.mail: dict[str, dict[int, bytes]] = {}
        self.locked: set[str] = set()
        self.expunged: list[int] = []
        self._next = 1

    def deliver(self, user: str, message: bytes) -> int:
        uid = self._next
        self._next += 1
        self.mail.setdefault(user, {})[uid] = message
        return uid

    def check_password(self, user: str, password: str) -> bool:
        real = self.users.get(user)
        return real is not None and hmac.compare_digest(real.encode(), password.encode())

    def password(self, user: str) -> str | None:
        return self.users.get(user)

    def lock_maildrop(self, user: str):
        if user in self.locked:
            return None
        self.locked.add(user)
        return FakeLock(self, user)

    def mailbox(self, user: str, name: str = "INBOX") -> FakeMailbox:
        if user not in self.mail:
            raise MailboxNotFound(user)
        return FakeMailbox(self, user)
