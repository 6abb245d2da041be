"""The lab: the shared pieces every lab server needs, and the runner that starts them.

``Lab`` holds the store, the users, the TLS context and the recorder; each protocol module
(``mailtrace.servers.smtp``, ``.pop3``, ``.imap``) exports

    def make_core_factory(lab: Lab) -> CoreFactory

which ``run_listeners`` uses to start plain and implicit-TLS listeners.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mailtrace.transcript.recorder import Recorder

if TYPE_CHECKING:  # only an annotation here: `mailtrace lab --help` need not load ssl
    import ssl

DEFAULT_USERS = {"alice": "alice", "bob": "bob"}
LOCAL_DOMAINS = ("lab.test", "localhost")
HOSTNAME = "lab.test"

# protocol -> (default plain port, default implicit-TLS port)
DEFAULT_PORTS = {"smtp": (2525, 4465), "pop3": (1100, 9950), "imap": (1430, 9930)}


@dataclass
class Lab:
    directory: Path  # the lab directory: mail/ (Maildirs), tls/ (CA and certificates)
    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    recorder: Recorder = field(default_factory=Recorder)
    hostname: str = HOSTNAME
    local_domains: tuple[str, ...] = LOCAL_DOMAINS
    tls_context: ssl.SSLContext | None = None
    lang: str = "en"
    store: object = None  # mailtrace.store.maildir.MaildirStore, created by open_store()
    connections: set = field(default_factory=set)  # live servers.base.Connection objects (notify())
    limiter: object = None  # servers.limits.ConnectionLimiter shared by all listeners (None: no limits)
    # Off loopback, plaintext passwords only after STARTTLS/STLS or on implicit TLS, unless this
    # is set (``--allow-plaintext-auth``, for a closed lab network).
    allow_plaintext_auth: bool = False
    # session id -> lab user, kept only for per-user transcripts (``--log-dir``; None: not asked for)
    session_users: dict | None = None
    live_sink: object = None  # the live terminal view (dropped when the lab stops)
    tls_names: tuple[str, ...] = ()  # extra names in the server certificate (--host)
    jsonl_log: tuple | None = None  # --log: (its sink, path, show_secrets)
    queue_ids: object = None  # SMTP queue id numbers (itertools.count); a lab worker: its own share
    show_secrets: bool = False  # --show-secrets: passwords may be shown (the banner, the logs)
    # accounts read from a --users FILE: the banner names them without their passwords (unlike
    # --user NAME:PASSWORD, typed on the command line in the same terminal) unless --show-secrets
    users_from_file: frozenset[str] = frozenset()

    @property
    def mail_dir(self) -> Path:
        return self.directory / "mail"

    def open_store(self):
        if self.store is None:
            from mailtrace.store.maildir import MaildirStore

            self.store = MaildirStore(self.mail_dir, self.users)
        return self.store


def core_factory(protocol: str, lab: Lab):
    module = importlib.import_module(f"mailtrace.servers.{protocol}")
    return module.make_core_factory(lab)


def session_user(core) -> str | None:
    """The lab user a session belongs to, as far as its core knows: the logged-in user (SMTP
    AUTH, POP3 USER/PASS or APOP, IMAP LOGIN/AUTHENTICATE), or for SMTP without AUTH the
    envelope sender when it is a lab user (``MAIL FROM:<alice@lab.test>``)."""
    user = getattr(core, "user", None)
    pop3_session = getattr(core, "session", None)
    if pop3_session is not None and hasattr(pop3_session, "user"):
        return pop3_session.user
    if type(core).__name__ == "Pop3ServerConnection":
        return None  # its .user is the name of a USER not yet confirmed by PASS
    if isinstance(user, str) and user:
        return user
    sender = getattr(core, "sender", None)
    if isinstance(sender, str) and "@" in sender:
        local, _, domain = sender.rpartition("@")
        store = getattr(core, "store", None)
        if domain.lower() in LOCAL_DOMAINS and store is not None and store.has_user(local.lower()):
            return local.lower()
    return None
