"""A client that hangs up in the middle of a pipelined burst: the server stops acting on what is
left of it, and records no reply the client never got (mailtrace/servers/base.py
``Connection._client_lost``).  Found by an independent tester: 40 pipelined FETCHes of a 5 MB
message from a client that closed after 2 s were all read and logged (200 MB of JSONL)."""

from __future__ import annotations

import socket
import struct

import pytest

from mailtrace.transcript.event import Kind, Side

from waiting import read_line, wait_until

BIG = b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n"
BIG = BIG * (2_000_000 // len(BIG))  # about 2 MB


def _login(sock: socket.socket, protocol: str) -> None:
    if protocol == "pop3":
        read_line(sock)
        for command in (b"USER alice\r\n", b"PASS alice\r\n"):
            sock.sendall(command)
            assert read_line(sock).startswith(b"+OK")
    else:
        read_line(sock)
        sock.sendall(b"a LOGIN alice alice\r\nb SELECT INBOX\r\n")
        while not read_line(sock).startswith(b"b OK"):
            pass


@pytest.mark.parametrize("protocol,command,done", [
    ("pop3", b"RETR 1\r\n", "+OK"),
    ("imap", b"f FETCH 1 (BODY.PEEK[])\r\n", "OK"),
])
def test_a_client_that_hangs_up_mid_burst_is_not_answered_further(lab_factory, protocol, command, done):
    lab = lab_factory((protocol,))
    lab.store.deliver("alice", BIG)
    sock = socket.create_connection(("127.0.0.1", lab.port(protocol)), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _login(sock, protocol)
    sock.sendall(command * 30)  # 30 x 2 MB, pipelined; not read
    sock.recv(65536)  # the first answer is on its way: the server holds the burst (one read)
    wait_until(lambda: any(e.kind is Kind.COMMAND and e.verb in ("RETR", "FETCH") for e in lab.events),
               what="the burst read by the server")
    # hang up with unread data: the kernel answers with a reset (SO_LINGER 0 makes sure of it)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    events = lab.wait_closed()
    answered = [e for e in events if e.side is Side.SERVER and e.kind is Kind.REPLY and e.code == done
                and e.verb in ("RETR", "FETCH") and not e.tag == "*"]
    assert len(answered) < 5, f"{len(answered)} of 30 answers recorded for a client that hung up"
    close = [e for e in events if e.kind is Kind.CLOSE][0]
    assert close.side is Side.CLIENT and "client-lost" in [c.key for c in close.reason.clauses]
