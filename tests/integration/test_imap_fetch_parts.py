"""A FETCH whose answer is larger than one store job's part (``FETCH_JOB_OCTETS``) is read and
sent in parts (a session never holds a whole mailbox in memory): the client still gets every
message, whole, in order, with its sequence number and UID, and one tagged OK."""

from __future__ import annotations

from mailtrace.protocols.imap.commands_selected import FETCH_JOB_OCTETS
from mailtrace.transcript.event import Kind
from test_imap_server import RunningServer


def _message(n: int, size: int) -> bytes:
    head = f"From: a@lab.test\r\nTo: alice@lab.test\r\nSubject: part test {n}\r\n\r\n".encode()
    line = f"message {n} line ".encode().ljust(70, b"x") + b"\r\n"
    return head + line * (size // len(line))


def test_a_fetch_larger_than_one_part_sends_every_message_in_order(tmp_path):
    server = RunningServer(tmp_path)
    try:
        count = 3 * (FETCH_JOB_OCTETS // 60_000) + 1  # over three parts
        sent = [_message(n, 60_000) for n in range(1, count + 1)]
        for data in sent:
            server.store.deliver("alice", data)
        imap = server.client("alice")
        assert imap.select("INBOX")[0] == "OK"
        status, items = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert status == "OK"
        fetched = [item for item in items if isinstance(item, tuple)]
        assert [body for _, body in fetched] == sent
        assert [head.split()[0] for head, _ in fetched] == [str(n).encode() for n in range(1, count + 1)]
        imap.logout()
        literals = [e for e in server.sink.events if e.kind is Kind.LITERAL and e.side.value == "S"]
        assert [e.raw for e in literals] == sent  # every message is in the transcript too
        tagged = [e for e in server.sink.events if e.kind is Kind.REPLY and e.tag not in ("", "*")]
        assert [(e.verb, e.code) for e in tagged if "FETCH" in e.verb] == [("UID FETCH", "OK")]
    finally:
        server.stop()
