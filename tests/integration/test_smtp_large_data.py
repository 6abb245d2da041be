"""Large SMTP DATA is written to the Maildir's tmp/ as it arrives, not held in memory (issue #11,
item 2): the real core on a real, fsync'ing Maildir store, several big messages at once.
(The 50 MB figure, against a running lab server, is tests/bench/bench_smtp_big_data.py.)"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from mailtrace.protocols.base import Pending, send_all, settle
from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection
from mailtrace.protocols.smtp.data import unstuff
from mailtrace.protocols.smtp.delivery import SPOOL_FLUSH, SPOOL_THRESHOLD
from mailtrace.protocols.smtp.spec import TRANSCRIPT_KEEP
from mailtrace.protocols.smtp.trace import with_header_break
from mailtrace.store.files import to_disk
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import Kind
from test_smtp_spec import Session

MB = 1024 * 1024
CHUNK = 64 * 1024  # what one socket read brings


def stuffed_body(n: int, size: int) -> bytes:
    """A message as sent after DATA (dot-stuffed, §4.5.2), about ``size`` octets, final dot excluded."""
    line = b"..a line that starts with a dot, stuffed " + b"x" * 40 + b"\r\n"
    other = f"line of message {n} ".encode() + b"y" * 50 + b"\r\n"
    lines = (line + other) * (size // (len(line) + len(other)))
    return f"Subject: big {n}\r\nFrom: <a@b.example>\r\n\r\n".encode() + lines


@pytest.fixture
def store(tmp_path):
    s = MaildirStore(tmp_path / "mail", {"alice": "alice", "bob": "bob"}, fsync=True)
    yield s
    s.close()


def files(root: Path, user: str, sub: str) -> list[Path]:
    return sorted((root / user / sub).iterdir())


def test_big_messages_at_once_keep_memory_bounded_and_arrive_intact(store, tmp_path):
    config = SmtpConfig(max_message_size=16 * MB)
    bodies = [stuffed_body(n, 4 * MB) for n in range(4)]
    clients = [Session(store, config) for _ in bodies]
    for c in clients:
        c.run(c.core.receive(b"EHLO pc1.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\n"
                             b"RCPT TO:<alice@lab.test>\r\nDATA\r\n"))
    chunks = [[b[i:i + CHUNK] for i in range(0, len(b), CHUNK)] for b in bodies]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(max(len(c) for c in chunks)):
            for client, pieces in zip(clients, chunks):  # interleaved, as concurrent clients arrive
                if i < len(pieces):
                    client.run(client.core.receive(pieces[i]))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # held in memory, four 4 MB messages are 16 MB at least; spooled, each client holds at most
    # the start of its message until it crosses SPOOL_THRESHOLD (then only the transcript's
    # first TRANSCRIPT_KEEP octets stay), plus the chunk in hand
    bound = len(clients) * (SPOOL_THRESHOLD + 2 * CHUNK) + MB
    assert peak < bound < 4 * MB, f"peak {peak / MB:.1f} MB while four 4 MB messages arrived"
    assert files(tmp_path / "mail", "bob", "new") == []  # nothing is visible before the final dot
    for c, body in zip(clients, bodies):
        c.run(c.core.receive(b".\r\n"))
        assert c.codes()[-1] == "250"
        data = [e for e in c.events if e.kind is Kind.DATA][0]
        assert len(data.raw) <= TRANSCRIPT_KEEP + 3 and data.size == len(body) + 3  # the transcript stays capped
    for user in ("bob", "alice"):
        stored = [p.read_bytes() for p in files(tmp_path / "mail", user, "new")]
        assert len(stored) == 4
        for body in bodies:
            expected = to_disk(with_header_break(unstuff(body)))
            match = [s for s in stored if s.endswith(expected)]
            assert len(match) == 1, "a message was not stored byte for byte"
            head = match[0][: len(match[0]) - len(expected)]
            assert head.startswith(b"Return-Path: <a@b.example>\nReceived: from pc1.example")
            assert f"for <{user}@lab.test>".encode() in head
        assert files(tmp_path / "mail", user, "tmp") == []  # published by rename, nothing left behind


def test_spooled_message_equals_the_in_memory_one(store, tmp_path):
    """The same body stored by both paths: just under and just over the threshold."""
    for size in (SPOOL_THRESHOLD // 2, SPOOL_THRESHOLD * 3):
        body = b"no header section: typed by hand\r\n.. a stuffed dot\r\n" + b"z" * 70 + b"\r\n"
        body = body * (size // len(body))
        c = Session(store, SmtpConfig())
        for piece in (b"HELO pc1\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n",
                      *(body[i:i + 1000] for i in range(0, len(body), 1000)), b".\r\n"):
            c.run(c.core.receive(piece))
        assert c.codes()[-1] == "250"
    stored = [p.read_bytes().split(b"\n", 4)[-1] for p in files(tmp_path / "mail", "bob", "new")]
    small, large = sorted(stored, key=len)
    assert small.startswith(b"\nno header section") and large.startswith(b"\nno header section")  # RFC 5322 §2.1
    assert large.startswith(small[:-1])


@pytest.mark.parametrize("end", ["eof", "oversize"])
def test_a_spooled_message_not_delivered_leaves_nothing(store, tmp_path, end):
    c = Session(store, SmtpConfig(max_message_size=2 * MB))
    c.run(c.core.receive(b"EHLO pc1\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n"))
    body = stuffed_body(0, MB)
    c.run(c.core.receive(body))
    assert len(files(tmp_path / "mail", "bob", "tmp")) == 1  # being written
    if end == "eof":
        c.run(c.core.eof())
    else:
        c.run(c.core.receive(body + body + b".\r\n"))
        assert c.codes()[-1] == "552"
    assert files(tmp_path / "mail", "bob", "tmp") == [] and files(tmp_path / "mail", "bob", "new") == []


def test_the_core_never_writes_a_spooled_message_itself(store, tmp_path):
    """Issue #10 item 3: the writes to tmp/ are jobs the shell runs (``Pending``), in order, and
    no more input is taken while one is outstanding; the 250 still comes after the last job."""
    core = SmtpServerConnection(SmtpConfig(), store, clock=time.time, client_address="127.0.0.1:40000")
    settle(core.start())
    settle(core.receive(b"HELO pc1\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n"))
    body = stuffed_body(0, 2 * MB)
    first = SPOOL_THRESHOLD + SPOOL_FLUSH + 1
    outputs = core.receive(body[:first])
    jobs = [o for o in outputs if isinstance(o, Pending)]
    assert len(jobs) == 1 and outputs[-1] is jobs[0]
    assert files(tmp_path / "mail", "bob", "tmp") == []  # the core wrote nothing itself
    assert core.receive(body[first:]) == []  # held while the job is outstanding
    assert files(tmp_path / "mail", "bob", "tmp") == []
    later = jobs[0].resume(jobs[0].job())  # what the shell's worker thread does
    assert len(files(tmp_path / "mail", "bob", "tmp")) == 1
    assert any(isinstance(o, Pending) for o in later)  # the held input gives the next writes
    settle(later)
    end = core.receive(b".\r\n")
    assert isinstance(end[-1], Pending) and b"250" not in send_all(end)  # not before the store is done
    assert files(tmp_path / "mail", "bob", "new") == []
    reply = send_all(settle(end[-1:]))
    assert reply.startswith(b"250 ")
    (stored,) = files(tmp_path / "mail", "bob", "new")
    assert stored.read_bytes().endswith(to_disk(unstuff(body)))
    assert files(tmp_path / "mail", "bob", "tmp") == []


def test_a_long_header_section_still_gets_its_empty_line_when_spooled(store, tmp_path):
    """RFC 5322 §2.1: a header section that runs past the first SPOOL_THRESHOLD octets, then a
    body line with no empty line before it: stored as the in-memory path stores it."""
    header = b"".join(b"X-Long-%d: " % i + b"h" * 60 + b"\r\n" for i in range(2 * SPOOL_THRESHOLD // 70))
    body = header + b"the body starts here, no empty line before it\r\n" + b"b" * 70 + b"\r\n"
    assert len(header) > SPOOL_THRESHOLD + 2 * CHUNK
    c = Session(store, SmtpConfig())
    c.run(c.core.receive(b"HELO pc1\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@lab.test>\r\nDATA\r\n"))
    for i in range(0, len(body), 1000):
        c.run(c.core.receive(body[i:i + 1000]))
    c.run(c.core.receive(b".\r\n"))
    assert c.codes()[-1] == "250"
    (stored,) = [p.read_bytes() for p in files(tmp_path / "mail", "alice", "new")
                 if b"the body starts here" in p.read_bytes()]
    assert stored.endswith(to_disk(header + b"\r\nthe body starts here, no empty line before it\r\n" + b"b" * 70
                                   + b"\r\n"))
