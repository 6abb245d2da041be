"""QA regression (independent checker): a capture that starts after the greeting and the login
(tcpdump started while a client was already connected) is annotated without false violations."""

from __future__ import annotations

import io

import pytest

from mailtrace.capture.export import ACK, FIN, PSH, tcp_frame
from mailtrace.capture.importer import import_capture
from mailtrace.capture.pcapfile import PcapWriter
from mailtrace.transcript.event import Kind, Side
from mailtrace.transcript.recorder import MemorySink, Recorder

SMTP = [("S", b"220 lab.test ESMTP\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250-lab.test\r\n250 8BITMIME\r\n"),
        ("C", b"MAIL FROM:<a@lab.test>\r\n"), ("S", b"250 OK\r\n"), ("C", b"RCPT TO:<b@lab.test>\r\n"),
        ("S", b"250 OK\r\n"), ("C", b"DATA\r\n"), ("S", b"354 go\r\n"), ("C", b"Subject: x\r\n\r\nhi\r\n.\r\n"),
        ("S", b"250 queued\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")]
POP3 = [("S", b"+OK ready\r\n"), ("C", b"USER a\r\n"), ("S", b"+OK\r\n"), ("C", b"PASS b\r\n"), ("S", b"+OK 1\r\n"),
        ("C", b"STAT\r\n"), ("S", b"+OK 1 10\r\n"), ("C", b"RETR 1\r\n"), ("S", b"+OK\r\nSubject: x\r\n\r\n.\r\n"),
        ("C", b"QUIT\r\n"), ("S", b"+OK bye\r\n")]
IMAP = [("S", b"* OK ready\r\n"), ("C", b"a1 LOGIN a b\r\n"), ("S", b"a1 OK\r\n"), ("C", b"a2 SELECT INBOX\r\n"),
        ("S", b"* 1 EXISTS\r\na2 OK [READ-WRITE] done\r\n"), ("C", b"a3 FETCH 1 FLAGS\r\n"),
        ("S", b"* 1 FETCH (FLAGS ())\r\na3 OK done\r\n"), ("C", b"a4 LOGOUT\r\n"), ("S", b"* BYE\r\na4 OK\r\n")]


def capture(dialogue, port, skip):
    """A capture without the TCP handshake and without the first ``skip`` turns."""
    c, s = ("127.0.0.1", 40001), ("127.0.0.1", port)
    buf = io.BytesIO()
    w = PcapWriter(buf)
    seq = {Side.CLIENT: 1001, Side.SERVER: 5001}
    for i, (who, data) in enumerate(dialogue):
        side = Side.CLIENT if who == "C" else Side.SERVER
        other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
        src, dst = (c, s) if side is Side.CLIENT else (s, c)
        if i >= skip:
            w.write(50.0 + i, tcp_frame(src, dst, seq[side], seq[other], PSH | ACK, data, side))
        seq[side] += len(data)
    w.write(70.0, tcp_frame(c, s, seq[Side.CLIENT], seq[Side.SERVER], FIN | ACK, b"", Side.CLIENT))
    w.write(70.0, tcp_frame(s, c, seq[Side.SERVER], seq[Side.CLIENT] + 1, FIN | ACK, b"", Side.SERVER))
    return buf.getvalue()


def imported(data):
    mem = MemorySink()
    import_capture(io.BytesIO(data), Recorder([mem]))
    return mem.events


@pytest.mark.parametrize("dialogue,port,skip", [(SMTP, 25, 3), (POP3, 110, 5), (IMAP, 143, 5)])
def test_capture_starting_after_the_login_has_no_false_violations(dialogue, port, skip):
    events = imported(capture(dialogue, port, skip))
    assert events[1].kind is Kind.GAP  # the transcript says the start is missing
    said = [e.raw for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)]
    assert b"".join(said) == b"".join(data for _, data in dialogue[skip:])  # nothing made up is shown
    assert [e.notes for e in events if e.notes] == []  # no "before the greeting", no "wrong state"


@pytest.mark.parametrize("dialogue,port", [(SMTP, 25), (POP3, 110), (IMAP, 143)])
def test_capture_missing_only_the_handshake_still_checks_the_greeting_onwards(dialogue, port):
    events = imported(capture(dialogue, port, 0))
    said = [e.raw for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)]
    assert b"".join(said) == b"".join(data for _, data in dialogue)
    assert [e.notes for e in events if e.notes] == []


def test_capture_starting_after_the_greeting_still_flags_real_mistakes():
    late = [("C", b"a5 LOGIN a b\r\n"), ("S", b"a5 BAD already logged in\r\n")]
    events = imported(capture(IMAP[:-2] + late, 143, 5))
    rules = [n.rule for e in events for n in e.notes]
    assert "wrong-state" in rules  # LOGIN in the selected state is still a mistake
