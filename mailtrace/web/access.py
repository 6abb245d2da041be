"""Who is looking, and what they may see.

Without ``--admin`` the web view is the lab's own, like the terminal: everyone who can reach
it (loopback by default) sees everything.  With ``--admin NAME`` it is a classroom: every
request needs a lab account (a login form for the page, HTTP Basic for scripts), each student
sees only their own sessions and mailbox, and NAME sees all.

Accounts are checked by one function, ``Access.authenticate``, against the lab's user table
(``--user NAME:PASSWORD``, the demo users, or a classroom's user file): the same check the
SMTP, POP3 and IMAP servers make (``MaildirStore.check_password``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Callable

COOKIE = "mailtrace_web"


@dataclass
class Access:
    check_password: Callable[[str, str], bool] | None = None  # the lab's user table (None: no accounts)
    admin: str | None = None  # classroom mode: this account sees everything
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # per run: restarts log everyone out

    @property
    def login_required(self) -> bool:
        return self.admin is not None

    def authenticate(self, name: str, password: str) -> str | None:
        """The lab user name if ``password`` is theirs, else None (names are case-insensitive)."""
        user = name.strip().lower()
        if not user or self.check_password is None:
            return None
        try:
            return user if self.check_password(user, password) else None
        except Exception:  # noqa: BLE001 - an odd name (control characters...) is just a failed login
            return None

    # -- the login cookie: "user:HMAC(secret, user)" ----------------------------------------------
    def token(self, user: str) -> str:
        mac = hmac.new(self.secret, user.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{user}:{mac}"

    def user_of_token(self, token: str | None) -> str | None:
        if not token or ":" not in token:
            return None
        user, _, mac = token.rpartition(":")
        return user if hmac.compare_digest(self.token(user), f"{user}:{mac}") else None

    def user_of_basic(self, header: str | None) -> str | None:
        """HTTP Basic credentials, for scripts (curl -u alice:alice)."""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            name, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return self.authenticate(name, password)

    # -- what a viewer may see ----------------------------------------------------------------
    def sees_all(self, viewer: str | None) -> bool:
        return not self.login_required or (viewer is not None and viewer == self.admin)

    def may_see_session(self, viewer: str | None, owners: set[str] | list[str]) -> bool:
        return self.sees_all(viewer) or (viewer is not None and viewer in owners)

    def may_see_user(self, viewer: str | None, user: str) -> bool:
        return self.sees_all(viewer) or (viewer is not None and viewer == user)
