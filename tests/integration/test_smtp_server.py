"""The SMTP lab server on 127.0.0.1 (ephemeral ports), driven by real clients."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import threading
from email.generator import BytesGenerator
from email.message import EmailMessage
from io import BytesIO

import pytest

from conftest import need
from mailtrace.store.files import to_wire
from mailtrace.transcript.event import Kind, Side
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.text import TextSink


def maildir_files(lab, user):
    new = lab.directory / "mail" / user / "new"
    cur = lab.directory / "mail" / user / "cur"
    return sorted(p for d in (new, cur) if d.exists() for p in d.iterdir())


def below_trace_headers(data: bytes) -> bytes:
    data = to_wire(data)  # stored with LF line ends (as Dovecot and mutt expect): compare in wire form
    head, rest = data.split(b"\r\n", 1)
    assert head.startswith(b"Return-Path: <")
    assert rest.startswith(b"Received: from ")
    return rest.split(b"\r\n", 3)[3]  # Received: is folded on three lines


def wire_form(msg: EmailMessage) -> bytes:
    """What smtplib.send_message puts between DATA and the final dot (before dot-stuffing)."""
    buf = BytesIO()
    BytesGenerator(buf, policy=msg.policy.clone(linesep="\r\n")).flatten(msg, linesep="\r\n")
    data = buf.getvalue()
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def test_smtplib_send_message_byte_for_byte(lab):
    msg = EmailMessage()
    msg["From"] = "Alicia Núñez <alice@lab.test>"
    msg["To"] = "bob@lab.test, alice@lab.test, ghost@lab.test"
    msg["Subject"] = "¿Te gustan las crêpes? ☕"
    body = ".leading dot line\n..two dots\n" + ("0123456789abcdef" * 4 + "\n") * 16_000 + "end\n.\n"
    msg.set_content(body)
    expected = wire_form(msg)
    assert len(expected) > 1_000_000
    with smtplib.SMTP("127.0.0.1", lab.port(), timeout=30) as client:
        refused = client.send_message(msg, to_addrs=["bob@lab.test", "alice@lab.test", "ghost@lab.test"])
    assert set(refused) == {"ghost@lab.test"} and refused["ghost@lab.test"][0] == 550
    for user in ("alice", "bob"):
        [path] = maildir_files(lab, user)
        assert below_trace_headers(path.read_bytes()) == expected
    assert not (lab.directory / "mail" / "ghost").exists()


def test_starttls_auth_and_implicit_tls(lab_factory):
    lab = lab_factory(("smtp",), implicit_tls=True)
    ctx = lab.client_tls_context()
    with smtplib.SMTP("127.0.0.1", lab.port(), timeout=10) as client:
        client.ehlo("student")
        assert client.has_extn("starttls")
        client.starttls(context=ctx)
        client.ehlo("student")
        assert not client.has_extn("starttls")
        client.login("alice", "alice")
        client.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: tls\r\n\r\nsecret\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", lab.tls_port(), context=ctx, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bob", "wrong")
        client.sendmail("<>", ["bob@lab.test"], b"Subject: implicit\r\n\r\nx\r\n")
    files = maildir_files(lab, "bob")
    assert len(files) == 2
    assert any(b"with ESMTPSA" in p.read_bytes() for p in files)
    events = lab.wait_closed(2)
    assert any(e.kind is Kind.TLS and e.tls.how == "starttls" for e in events)
    assert all(b"alice" not in e.shown() for e in events if e.verb == "AUTH" and e.side is Side.CLIENT)


def test_swaks_delivers(lab):
    swaks = need("swaks")
    out = subprocess.run([swaks, "--server", f"127.0.0.1:{lab.port()}", "--from", "x@example.org", "--to",
                          "alice@lab.test", "--header", "Subject: swaks test", "--body", "hello from swaks"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    [path] = maildir_files(lab, "alice")
    assert b"hello from swaks" in path.read_bytes()


def test_curl_delivers(lab, tmp_path):
    curl = need("curl")
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"From: c@example.org\r\nTo: bob@lab.test\r\nSubject: curl\r\n\r\nsent by curl\r\n")
    out = subprocess.run([curl, "-sS", "--max-time", "20", f"smtp://127.0.0.1:{lab.port()}/client.example",
                          "--mail-from", "c@example.org", "--mail-rcpt", "bob@lab.test", "--upload-file", str(mail)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    [path] = maildir_files(lab, "bob")
    assert below_trace_headers(path.read_bytes()) == mail.read_bytes()


def converse(port: int, lines: list[bytes], timeout: float = 10) -> list[bytes]:
    """Type lines as a student would in nc: wait for each reply before the next line."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        f = sock.makefile("rb")
        replies.append(f.readline())
        in_data = False
        for line in lines:
            sock.sendall(line)
            if in_data and line != b".\r\n":
                continue  # message lines get no reply
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            replies.append(reply)
            in_data = reply.startswith(b"354")
    return replies


def test_lecture_session_in_jsonl_and_text_logs(lab_factory, tmp_path):
    log, text = tmp_path / "s.jsonl", tmp_path / "s.txt"
    lab = lab_factory(("smtp",), sinks=(JsonlSink(log), TextSink(text)), tls=False)
    lines = [b"HELO crepes.fr\r\n", b"MAIL FROM:<alice@crepes.fr>\r\n", b"RCPT TO: bob@lab.test\r\n", b"DATA\r\n",
             b"Subject: ketchup\r\n", b"\r\n", b"Hi Bob\r\n", b".\r\n", b"QUIT\r\n"]
    replies = converse(lab.port(), lines)
    assert [r[:3] for r in replies] == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]
    lab.wait_closed(1)
    lab.lab.recorder.close()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[0]["format"] == "mailtrace-transcript"
    dialogue = [(r["side"], r["raw"].rstrip("\r\n")) for r in records[1:] if r["kind"] in ("command", "reply", "data")]
    assert dialogue[:4] == [("S", "220 lab.test ESMTP mailtrace lab server ready"), ("C", "HELO crepes.fr"),
                            ("S", dialogue[2][1]), ("C", "MAIL FROM:<alice@crepes.fr>")]
    assert ("C", "Subject: ketchup\r\n\r\nHi Bob\r\n.") in dialogue
    assert dialogue[-1] == ("S", "221 2.0.0 lab.test closing connection")
    rcpt = [r for r in records if r.get("verb") == "RCPT" and r["kind"] == "command"][0]
    assert {n["rule"] for n in rcpt["notes"]} == {"space-after-colon", "missing-brackets"}
    assert [r["seq"] for r in records[1:]] == sorted(r["seq"] for r in records[1:])
    txt = text.read_text()
    order = ["S: 220 lab.test", "C: HELO crepes.fr", "S: 250 lab.test Hello crepes.fr", "C: MAIL FROM:<alice@crepes.fr>",
             "C: RCPT TO: bob@lab.test", "C: DATA", "S: 354", "C: Subject: ketchup", "C: Hi Bob", "C: .",
             "S: 250 2.0.0 OK", "C: QUIT", "S: 221"]
    positions = [txt.index(item) for item in order]
    assert positions == sorted(positions)


def test_bad_input_server_stays_up(lab):
    port = lab.port()
    # binary garbage: 500s, then 421 after too many errors; nothing crashes
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.recv(1024)
        sock.sendall(bytes(range(256)) * 40 + b"\r\n" + b"\x00\xff\r\n" * 30)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"500 5.5.2" in data and data.rstrip().endswith(b"too many errors, closing connection")
    # a 100 KB line: one 500, and the session goes on
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"HELO " + b"A" * 100_000 + b"\r\nNOOP\r\n")
        assert f.readline().startswith(b"500 5.5.2 Error: line too long")
        assert f.readline().startswith(b"250 2.0.0")
    # the server still serves a polite client
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_disconnect_mid_data_delivers_nothing(lab):
    with socket.create_connection(("127.0.0.1", lab.port()), timeout=10) as sock:
        f = sock.makefile("rb")
        f.readline()
        for line in (b"HELO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n"):
            sock.sendall(line)
            f.readline()
        sock.sendall(b"Subject: half\r\n\r\n" + b"partial line\r\n" * 1000)
        f.close()
    events = lab.wait_closed(1)
    assert [e for e in events if e.kind is Kind.DATA][0].incomplete
    assert maildir_files(lab, "bob") == []
    assert not list((lab.directory / "mail" / "bob" / "tmp").iterdir())


@pytest.mark.slow
def test_50mb_data_gets_552_and_nothing_is_delivered(lab):
    chunk = (b"z" * 998 + b"\r\n") * 1024  # 1 MiB
    with socket.create_connection(("127.0.0.1", lab.port()), timeout=60) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n")
        replies = [f.readline() for _ in range(12)]
        assert replies[-1].startswith(b"354")
        for _ in range(50):
            sock.sendall(chunk)
        sock.sendall(b".\r\nQUIT\r\n")
        assert f.readline().startswith(b"552 5.3.4")
        assert f.readline().startswith(b"221")
    assert maildir_files(lab, "bob") == []
    events = lab.wait_closed(1)
    data = [e for e in events if e.kind is Kind.DATA][0]
    assert data.size == 50 * len(chunk) + 3 and len(data.raw) < 100_000


def test_200_idle_connections_do_not_block_a_client(lab):
    port = lab.port()
    idle = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.append(sock)
        for sock in idle[:5]:
            assert sock.recv(100).startswith(b"220")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@b.c", ["alice@lab.test"], b"Subject: busy\r\n\r\nstill served\r\n")
    finally:
        for sock in idle:
            sock.close()
    assert len(maildir_files(lab, "alice")) == 1


def test_idle_timeout_421(lab_factory):
    lab = lab_factory(("smtp",), tls=False, factory_overrides={"smtp": {"idle_timeout": 0.3}})
    with socket.create_connection(("127.0.0.1", lab.port()), timeout=10) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        assert f.readline().startswith(b"421 4.4.2")
        assert f.readline() == b""  # closed by the server


def test_concurrent_clients(lab):
    errors = []

    def send(i):
        try:
            with smtplib.SMTP("127.0.0.1", lab.port(), timeout=20) as client:
                client.sendmail("a@b.c", ["bob@lab.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(maildir_files(lab, "bob")) == 20


@pytest.mark.parametrize("lang,headings", [("en", ["Handshake", "Message transfer", "Closing"]),
                                           ("es", ["Saludo", "Transferencia del mensaje", "Cierre"])])
def test_live_view_has_the_lecture_phases(lab_factory, lang, headings):
    from io import StringIO

    from rich.console import Console

    from mailtrace.transcript.terminal import TerminalSink

    out = StringIO()
    lab = lab_factory(("smtp",), tls=False, sinks=(TerminalSink(Console(file=out, width=200), lang=lang),))
    converse(lab.port(), [b"HELO crepes.fr\r\n", b"MAIL FROM:<alice@crepes.fr>\r\n", b"RCPT TO:<bob@lab.test>\r\n",
                          b"DATA\r\n", b"Subject: x\r\n", b"\r\n", b"body\r\n", b".\r\n", b"QUIT\r\n"])
    lab.wait_closed(1)
    text = out.getvalue()
    assert "\x1b[" not in text  # a file, not a terminal: no colour codes
    positions = [text.index(f"── {h}") for h in headings]
    assert positions == sorted(positions)
    assert text.index("── " + headings[1]) < text.index("MAIL FROM") < text.index("── " + headings[2])
    assert "[data: " in text  # the body folded into one summary line


def test_mail_sent_by_smtp_is_read_back_by_pop3_byte_for_byte(lab_factory):
    import poplib

    from mailtrace.cli.serve import available_protocols

    if "pop3" not in available_protocols():
        pytest.skip("no POP3 lab server yet")
    lab = lab_factory(("smtp", "pop3"), tls=False)
    raw = b"From: a@example.org\r\nTo: alice@lab.test\r\nSubject: round trip\r\n\r\n.dot\r\nend\r\n"
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as client:
        client.sendmail("a@example.org", ["alice@lab.test"], raw)
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    try:
        pop.user("alice")
        pop.pass_("alice")
        _, lines, _ = pop.retr(1)
    finally:
        pop.quit()
    got = b"\r\n".join(lines) + b"\r\n"
    assert below_trace_headers(got) == raw


def test_text_log_labels_lines_while_sessions_overlap(lab_factory, tmp_path):
    """Two clients at once (as Thunderbird or an MTA sending a bounce do): each line of the
    --text file names its session once it has overlapped another, until it closes (after
    "--- session smtp-2 closed" an unlabelled line would read as smtp-2's); a session that
    has been alone all along stays unlabelled."""
    text = tmp_path / "s.txt"
    lab = lab_factory(("smtp",), sinks=(TextSink(text),), tls=False)
    first = socket.create_connection(("127.0.0.1", lab.port()), timeout=10)
    f1 = first.makefile("rb")
    f1.readline()
    first.sendall(b"HELO one\r\n")
    f1.readline()
    lab.wait_for(lambda evs: any(e.raw.startswith(b"250 ") for e in evs))
    with socket.create_connection(("127.0.0.1", lab.port()), timeout=10) as second:
        f2 = second.makefile("rb")
        f2.readline()
        for sock, f, line in ((second, f2, b"HELO two\r\n"), (first, f1, b"NOOP\r\n"), (second, f2, b"QUIT\r\n")):
            sock.sendall(line)
            f.readline()
    lab.wait_closed(1)
    first.sendall(b"QUIT\r\n")
    f1.readline()
    first.close()
    lab.wait_closed(2)
    lab.lab.recorder.close()
    lines = text.read_text().splitlines()
    one, two = sorted({e.session for e in lab.events})
    assert "C: HELO one" in lines  # alone: no label
    assert f"[{two}] C: HELO two" in lines and f"[{one}] C: NOOP" in lines and f"[{two}] C: QUIT" in lines
    assert f"[{one}] C: QUIT" in lines  # the first session's QUIT, after the second closed: still labelled
    dialogue = [ln for ln in lines if not ln.startswith("---")]
    labelled = [ln.split("] ", 1)[0] + "]" for ln in dialogue if ln.startswith("[")]
    # two's 220, HELO, 250; one's NOOP, 250; two's QUIT, 221 and the left-without-transaction
    # note under it; then one's QUIT, its note and 221
    assert labelled == [f"[{two}]"] * 3 + [f"[{one}]"] * 2 + [f"[{two}]"] * 3 + [f"[{one}]"] * 3, dialogue
