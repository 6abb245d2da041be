"""Bounded resources (issue #11): connections in total and per client address, refused with
each protocol's own busy reply; IMAP literals capped before LOGIN (RFC 7888 §5 sizes)."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket

import pytest

from mailtrace.servers.limits import ConnectionLimiter, Limits
from waiting import read_line

BUSY = {"smtp": b"421 4.3.2 ", "pop3": b"-ERR [SYS/TEMP] ", "imap": b"* BYE [UNAVAILABLE] "}
GREETING = {"smtp": b"220 ", "pop3": b"+OK ", "imap": b"* OK "}


def greeting(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock, read_line(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
def test_total_connection_limit_gets_the_protocols_busy_reply(lab_factory, protocol):
    lab = lab_factory((protocol,), tls=False, limits={"max_connections": 2})
    port = lab.port(protocol)
    first, g1 = greeting(port)
    second, g2 = greeting(port)
    assert g1.startswith(GREETING[protocol]) and g2.startswith(GREETING[protocol])
    third, busy = greeting(port)
    assert busy.startswith(BUSY[protocol]), busy
    assert b"too many connections" in busy
    assert closed_by_server(third)
    first.close()
    # once a connection ends, a new one is served again (the count was released)
    lab.wait_closed(2)
    fourth, g4 = greeting(port)
    assert g4.startswith(GREETING[protocol])
    for s in (second, third, fourth):
        s.close()


def test_the_limit_is_shared_by_all_protocols(lab_factory):
    lab = lab_factory(("smtp", "pop3", "imap"), tls=False, limits={"max_connections": 2})
    smtp = smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10)
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):  # "* BYE" as the greeting
        imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    pop.quit()
    smtp.quit()


def test_per_address_limit(lab_factory):
    lab = lab_factory(("pop3",), tls=False, limits={"max_per_address": 1, "exempt_loopback": False})
    first, g1 = greeting(lab.port("pop3"))
    assert g1.startswith(b"+OK")
    second, busy = greeting(lab.port("pop3"))
    assert busy.startswith(b"-ERR [SYS/TEMP] too many connections from your address")
    with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
        poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    first.close()
    second.close()


def test_loopback_is_exempt_from_per_address_limits_by_default(lab_factory):
    lab = lab_factory(("smtp",), tls=False, limits={"max_per_address": 1})
    socks = [greeting(lab.port())[1] for _ in range(3)]
    assert all(g.startswith(b"220 ") for g in socks)


def test_rate_limit_per_address_is_a_token_bucket():
    now = [0.0]
    limiter = ConnectionLimiter(Limits(burst_per_address=3, rate_per_address=1.0, exempt_loopback=False),
                                clock=lambda: now[0])
    assert [limiter.admit("10.0.0.7") for _ in range(3)] == [None, None, None]
    assert limiter.admit("10.0.0.7") == "too many new connections from your address"
    assert limiter.admit("10.0.0.8") is None  # another address has its own bucket
    now[0] += 1.0  # one token back per second
    assert limiter.admit("10.0.0.7") is None
    assert limiter.admit("10.0.0.7") is not None
    assert limiter.total == 5  # refused connections are not counted
    for _ in range(4):
        limiter.release("10.0.0.7")
    limiter.release("10.0.0.8")
    assert limiter.total == 0 and limiter.per_address == {}


def _imap_logged_out(lab):
    sock, g = greeting(lab.port("imap"))
    assert g.startswith(b"* OK")
    return sock


def test_imap_literal_before_login_is_capped(lab_factory):
    lab = lab_factory(("imap",), tls=False)
    # a non-synchronizing literal that is too large ends the connection (RFC 7888 §4)
    sock = _imap_logged_out(lab)
    sock.sendall(b"b LOGIN {67108864+}\r\n")
    assert read_line(sock).startswith(b"* BYE [TOOBIG] literal of 67108864 octets is larger than the 4096")
    assert closed_by_server(sock)
    # a synchronizing one gets NO [TOOBIG] instead of "+": the client sends nothing more
    sock = _imap_logged_out(lab)
    sock.sendall(b"c LOGIN {5000}\r\n")
    assert read_line(sock).startswith(b"c NO [TOOBIG]")
    sock.sendall(b"d LOGIN {5}\r\n")  # a small one is fine
    assert read_line(sock).startswith(b"+ ")
    sock.sendall(b"alice {5}\r\n")
    assert read_line(sock).startswith(b"+ ")
    sock.sendall(b"alice\r\n")
    assert read_line(sock).startswith(b"d OK")
    # after login, a big APPEND literal is accepted (continuation request)
    sock.sendall(b"e APPEND INBOX {50000}\r\n")
    assert read_line(sock).startswith(b"+ ")
    sock.sendall(b"Subject: big\r\n\r\n" + b"x" * (50000 - 18) + b"\r\n\r\n")
    assert b"e OK" in read_line(sock)
    sock.close()


def test_a_large_append_is_spooled_to_tmp_and_stored_intact(lab_factory):
    """An APPEND literal of 3 MB is written to tmp/ as it arrives (store/spool.py), not held in
    memory; the stored message is the same octets (LF on disk, CRLF on the wire)."""
    lab = lab_factory(("imap",), tls=False)
    body = b"".join(b"line %07d of a large message, with some text to fill it up\r\n" % i for i in range(50_000))
    message = b"Subject: big\r\nFrom: bob@lab.test\r\n\r\n" + body
    with imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=30) as imap:
        imap.login("alice", "alice")
        typ, data = imap.append("INBOX", r"(\Seen)", None, message)
        assert typ == "OK" and b"APPENDUID" in data[0]
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
        assert data[0][1] == message and f"RFC822.SIZE {len(message)}".encode() in data[0][0]
        # a failed APPEND (no such mailbox) leaves no spool file behind
        typ, _ = imap.append("Nowhere", None, None, message)
        assert typ == "NO"
        imap.noop()
    literal = [e for e in lab.events if e.kind.value == "literal" and e.spooled]
    assert len(literal) == 2 and literal[0].size == len(message) and len(literal[0].raw) < 20_000
    assert list((lab.store.root / "alice" / "tmp").iterdir()) == []
    (name,) = [p.name for p in (lab.store.root / "alice" / "cur").iterdir()]
    crlfs = message.count(b"\r\n")
    assert f",S={len(message) - crlfs},W={len(message)}" in name


def test_out_of_file_descriptors_one_line_and_recovery(tmp_path):
    """Issue #11: 400 connections under a 256-descriptor limit printed 29,532 lines of
    tracebacks; now one line (per 10 s), and the lab serves again once clients leave."""
    import re
    import resource
    import signal
    import subprocess
    import sys
    import time

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "lab", "--quiet", "--no-tls", "--dir", str(tmp_path),
                             "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=low_limit)
    try:
        port = int(re.search(rb"SMTP on [^,]*:(\d+)", proc.stdout.readline()).group(1))
        socks = []
        for _ in range(300):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            except OSError:
                break
        # every one of them is greeted or refused (421) in the end, or waits in the backlog
        time.sleep(1.5)  # (asyncio retries accept() a second after EMFILE)
        for s in socks:
            s.close()
        sock, data = None, b""
        for _ in range(50):  # bounded: until a greeting comes back
            try:
                sock, data = greeting(port)
            except OSError:
                time.sleep(0.2)
                continue
            if data.startswith(b"220 "):
                break
            sock.close()
            time.sleep(0.2)
        assert data.startswith(b"220 "), data
        sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = err.decode().splitlines()
    assert "Traceback" not in err.decode() and len(lines) <= 3, lines[:5]
