"""Fairness (issue #11): one client that pipelines 100,000 commands in one write only slows
itself; another client is greeted and completes a whole session while the flood is still
being answered.  And SIGTERM stops a flooded lab."""

from __future__ import annotations

import imaplib
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading

import pytest

FLOOD = 100_000
COMMANDS = {"smtp": b"NOOP\r\n", "pop3": b"NOOP\r\n", "imap": b"a NOOP\r\n"}
REPLY_END = {"smtp": b"250 ", "pop3": b"+OK", "imap": b"a OK"}


class Flooder:
    """Sends FLOOD pipelined commands in one write, and reads (counts) every reply."""

    def __init__(self, protocol: str, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.recv(4096)  # the greeting
        if protocol == "pop3":
            self.sock.sendall(b"USER alice\r\nPASS alice\r\n")
            self._read_lines(2)
        self.protocol = protocol
        self.replies = 0
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._count, daemon=True)
        self._writer = threading.Thread(target=self.sock.sendall, args=(COMMANDS[protocol] * FLOOD,), daemon=True)

    def _read_lines(self, n: int) -> None:
        data = b""
        while data.count(b"\n") < n:
            data += self.sock.recv(4096)

    def _count(self) -> None:
        marker, tail = REPLY_END[self.protocol], b""
        try:
            while self.replies < FLOOD:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data = tail + chunk
                self.replies += data.count(marker)
                tail = data[-(len(marker) - 1):]
        except OSError:
            pass
        self.done.set()

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def close(self) -> None:
        self.sock.close()


def smtp_session(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("fair.test")
        smtp.sendmail("carol@lab.test", ["bob@lab.test"], b"Subject: fair\r\n\r\nhello\r\n")


def pop3_session(port: int) -> None:
    pop = poplib.POP3("127.0.0.1", port, timeout=60)
    pop.user("bob")
    pop.pass_("bob")
    pop.stat()
    pop.quit()


def imap_session(port: int) -> None:
    with imaplib.IMAP4("127.0.0.1", port, timeout=60) as imap:
        imap.login("bob", "bob")
        imap.select("INBOX")
        imap.logout()


SESSIONS = {"smtp": smtp_session, "pop3": pop3_session, "imap": imap_session}


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
def test_a_flooding_client_only_slows_itself(lab_factory, protocol):
    lab = lab_factory((protocol,), tls=False)
    flooder = Flooder(protocol, lab.port(protocol))
    try:
        flooder.start()
        # wait (bounded, by condition) until the server is busy answering the flood
        lab.wait_for(lambda evs: sum(e.verb == "NOOP" for e in evs) > 1000, timeout=30)
        SESSIONS[protocol](lab.port(protocol))  # a whole session with a real client
        answered = flooder.replies
        assert not flooder.done.is_set() and answered < FLOOD, (
            f"the other client was served only after the flood ({answered} replies)")
    finally:
        flooder.close()


def test_sigterm_stops_a_flooded_lab(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "lab", "--dir", str(tmp_path / "lab"), "--no-tls",
                             "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline().decode()
        ports = [int(p) for p in re.findall(r":(\d+)", first)]
        assert len(ports) == 3, first
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        flooders = [Flooder(p, port) for p, port in zip(("smtp", "pop3", "imap"), ports)]
        for f in flooders:
            f.start()
        # a session completes: the flooded lab is serving, then told to stop
        smtp_session(ports[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for f in flooders:
            f.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_plaintext_after_starttls_is_dropped_however_the_input_is_sliced(lab_factory):
    """The shell feeds input in slices (fairness); bytes that came in plaintext with STARTTLS
    must still never be run after the switch (RFC 3207 §5), and the handshake must not lose
    the ClientHello to the plaintext reader."""
    from mailtrace.transcript.event import Kind

    lab = lab_factory(("smtp",))
    raw = socket.create_connection(("127.0.0.1", lab.port()), timeout=30)
    raw.recv(1000)
    raw.sendall(b"EHLO x\r\nSTARTTLS\r\n" + b"MAIL FROM:<evil@x.test>\r\n" * 300)
    data = b""
    while b"220 2.0.0" not in data:
        data += raw.recv(4096)
    tls = lab.client_tls_context().wrap_socket(raw, server_hostname="localhost")
    tls.sendall(b"EHLO y\r\nRSET\r\n")
    answer = b""
    while b"250 2.0.0" not in answer and b"RSET" not in answer:
        chunk = tls.recv(4096)
        if not chunk:
            break
        answer += chunk
        if answer.count(b"\r\n250 ") + answer.startswith(b"250 ") >= 2:
            break
    tls.close()
    events = lab.events
    mails = [e for e in events if e.kind is Kind.COMMAND and e.verb == "MAIL"]
    # recorded as injected (those the core saw) or dropped by the shell; none was run
    assert all(any(n.rule == "starttls-injection" for n in e.notes) for e in mails)
    assert not [e for e in events if e.kind is Kind.REPLY and e.verb == "MAIL"]
    assert b"250" in answer  # the TLS session works (EHLO answered)


def test_clients_that_reset_mid_conversation_cost_no_error_lines(tmp_path):
    """A client that pipelines bad commands and resets the connection before reading the
    answers is gone, not a server error: the lab (on its real event loop, uvloop when
    installed, whose closed transports raise RuntimeError on write) prints no "internal
    error" line for it, and still serves the next client."""
    import struct

    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "lab", "--dir", str(tmp_path / "lab"), "--no-tls",
                             "--quiet", "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline().decode()
        ports = [int(p) for p in re.findall(r":(\d+)", first)]
        assert len(ports) == 3, first
        for port in ports:
            for _ in range(30):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(b"\x01\xfe bad command\r\n" * 200)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                s.close()
        smtp_session(ports[0])
        pop3_session(ports[1])
        imap_session(ports[2])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert b"internal error" not in err, err.decode(errors="replace")[:500]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
