"""Shared helpers for the IMAP tests (no tests here): a lab store and a tiny conversation driver."""

from __future__ import annotations

import re
import time

from mailtrace.protocols.base import Close, Pending, Send, events_of
from mailtrace.protocols.imap import ImapConfig, ImapServerConnection
from mailtrace.store.maildir import MaildirStore

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


class Client:
    """Feeds a core and keeps what it sent back; ``chunk`` splits every input (1: byte by byte)."""

    def __init__(self, store, chunk: int = 10_000, **kw) -> None:
        self.core = make_core(store, **kw)
        self.chunk = chunk
        self.outputs = list(self.core.start())
        self.closed = False

    def send(self, data: bytes) -> bytes:
        got = []
        for i in range(0, len(data), self.chunk):
            out = self.core.receive(data[i:i + self.chunk])
            while any(isinstance(o, Pending) for o in out):  # run slow jobs as the shell would
                k = next(k for k, o in enumerate(out) if isinstance(o, Pending))
                self.outputs += out[:k]
                got += out[:k]
                out = out[k].resume(out[k].job()) + out[k + 1:]
            self.outputs += out
            got += out
        self.closed = self.closed or any(isinstance(o, Close) for o in got)
        return b"".join(o.data for o in got if isinstance(o, Send))

    def cmd(self, line: str | bytes) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        return self.send(data + b"\r\n")

    def login(self, user: str = "alice", password: str = PASSWORD) -> bytes:
        return self.send(b"L1 LOGIN " + user.encode() + b" {%d+}\r\n" % len(password.encode()) + password.encode() + b"\r\n")

    def select(self, box: str = "INBOX") -> bytes:
        return self.cmd(f"S1 SELECT {box}")

    @property
    def events(self):
        return events_of(self.outputs)


def run_pending(outputs: list) -> list:
    """The outputs with every Pending replaced by what its resume() returns (as the shell does)."""
    done = []
    queue = list(outputs)
    while queue:
        o = queue.pop(0)
        if isinstance(o, Pending):
            queue[0:0] = o.resume(o.job())
        else:
            done.append(o)
    return done


def tagged(reply: bytes, tag: str) -> bytes:
    """The status word of the tagged response ``tag`` in ``reply``."""
    m = re.search(rb"^" + re.escape(tag.encode()) + rb" (OK|NO|BAD)", reply, re.M)
    assert m, reply
    return m.group(1)
