"""The lab: the shared pieces every lab server needs, and the runner that starts them.

``Lab`` holds the store, the users, the TLS context and the recorder; each protocol module
(``mailtrace.servers.smtp``, ``.pop3``, ``.imap``) exports

    def make_core_factory(lab: Lab) -> CoreFactory

which ``run_listeners`` uses to start plain and implicit-TLS listeners.
"""

from __future__ import annotations

import importlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from mailtrace.transcript.recorder import Recorder

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
