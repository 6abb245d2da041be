"""Shared helpers for the IMAP tests (no tests here): a lab store and the IMAP side of tests/conversation.py."""

from __future__ import annotations

import re
import time

from mailtrace.protocols.base import Close, Pending, Send, events_of, settle
from mailtrace.protocols.imap import ImapConfig, ImapServerConnection
from mailtrace.store.maildir import MaildirStore

from conversation import Conversation

PASSWORD = 'pa ss"w\\rd'  # a space, a quote and a backslash: needs a literal or escapes
USERS = {"alice": PASSWORD, "bob": "bob"}

SIMPLE = (b"From: Bob Example <bob@lab.test>\r\nTo: alice@lab.test\r\nCc: carol@lab.test\r\n"
          b"Subject: hello there\r\nDate: Mon, 02 Jan 2023 10:00:00 +0000\r\nMessage-ID: <1@lab.test>\r\n"
          b"\r\nFirst message body.\r\nSecond line.\r\n")
MULTI = (b"From: carol@lab.test\r\nTo: alice@lab.test\r\nSubject: =?utf-8?q?caf=C3=A9?= report\r\n"
         b"Date: Tue, 03 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
         b"preamble\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"The caf=C3=A9 numbers.\r\n--XYZ\r\nContent-Type: message/rfc822\r\n\r\n"
         b"Subject: inner\r\nFrom: dave@lab.test\r\n\r\ninner body\r\n--XYZ--\r\nepilogue\r\n")


def make_core(store, *, clock=time.time, tls: bool = False, secure_channel: bool = True,
              **config) -> ImapServerConnection:
    """A server core on ``store``; ``config``: ImapConfig fields (``tls_available=True``...)."""
    return ImapServerConnection(ImapConfig(**config), store, clock=clock, tls=tls, secure_channel=secure_channel)


def make_store(root) -> MaildirStore:
    return MaildirStore(root, dict(USERS), fsync=False)


class Client(Conversation):
    """A core driven by tests/conversation.py; ``chunk`` splits every input (1: byte by byte)."""

    def __init__(self, store, chunk: int = 10_000, **kw) -> None:
        super().__init__(make_core(store, **kw), chunk=chunk)

    def cmd(self, line: str | bytes) -> bytes:
        return self.lines(line)

    def login(self, user: str = "alice", password: str = PASSWORD) -> bytes:
        return self.send(b"L1 LOGIN " + user.encode() + b" {%d+}\r\n" % len(password.encode()) + password.encode() + b"\r\n")

    def select(self, box: str = "INBOX") -> bytes:
        return self.cmd(f"S1 SELECT {box}")


#: the outputs with every Pending replaced by what its resume() returns (as the shell does)
run_pending = settle


def tagged(reply: bytes, tag: str) -> bytes:
    """The status word of the tagged response ``tag`` in ``reply``."""
    m = re.search(rb"^" + re.escape(tag.encode()) + rb" (OK|NO|BAD)", reply, re.M)
    assert m, reply
    return m.group(1)
