"""The proxy between real clients and real servers (aiosmtpd, written elsewhere): every command
and reply in order, bytes relayed verbatim, sessions told apart, errors that say why."""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from mailtrace.transcript.event import Kind
from test_proxy_support import loop_thread, start_aiosmtpd, start_proxy, wait_closed  # noqa: F401


def _dialogue(events, session=None):
    return [(e.side.value, e.text()) for e in events
            if e.kind in (Kind.COMMAND, Kind.REPLY) and (session is None or e.session == session)]


def test_smtplib_through_proxy_shows_every_line_in_order(loop_thread):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port))  # protocol guessed? port is ephemeral: by greeting
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: hi\r\n\r\nhello\r\n")
    wait_closed(mem, 1)
    assert handler.messages == [b"Subject: hi\r\n\r\nhello\r\n"]
    events = mem.events
    assert events[0].kind is Kind.OPEN and events[0].protocol == "smtp"
    assert events[0].peer.mode == "proxy"
    lines = _dialogue(events)
    assert lines[0][0] == "S" and lines[0][1].startswith("220 ")
    assert ("C", "ehlo client.test") in lines
    assert [t for s, t in lines if s == "C"] == ["ehlo client.test", "mail FROM:<alice@lab.test> size=22",
                                                 "rcpt TO:<bob@lab.test>", "data", "QUIT"]
    data = [e for e in events if e.kind is Kind.DATA]
    assert len(data) == 1 and data[0].raw.endswith(b"\r\n.\r\n")
    assert events[-1].kind is Kind.CLOSE


def test_auth_plain_and_login_decoded_password_hidden(loop_thread):
    _, _, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("c")
        s.login("alice", "s3cret")  # smtplib picks PLAIN here
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("c")
        s.user, s.password = "bob", "hunter2"
        s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    wait_closed(mem, 2)
    shown = "\n".join(e.text() for e in mem.events)
    assert 'user "alice"' in shown and '"bob"' in shown
    assert "s3cret" not in shown and "hunter2" not in shown
    assert all(b"s3cret" not in e.shown() for e in mem.events)


def test_show_secrets_decodes_password(loop_thread):
    _, _, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", show_secrets=True))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("c")
        s.login("alice", "s3cret")
    wait_closed(mem, 1)
    assert any("password s3cret" in e.text() for e in mem.events)


def test_ten_concurrent_sessions_told_apart(loop_thread):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    errors = []

    def client(i):
        try:
            with smtplib.SMTP("127.0.0.1", proxy.port, timeout=20) as s:
                s.ehlo(f"client{i}.test")
                s.sendmail(f"u{i}@lab.test", ["bob@lab.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    wait_closed(mem, 10)
    sessions = {e.session for e in mem.events}
    assert len(sessions) == 10 and len(handler.messages) == 10
    for sid in sessions:
        lines = _dialogue(mem.events, sid)
        helo = [t for s, t in lines if t.startswith("ehlo ")]
        assert len(helo) == 1
        i = helo[0].split("client")[1].split(".")[0]
        assert any(t.startswith(f"mail FROM:<u{i}@lab.test>") for s, t in lines)
        seqs = [e.seq for e in mem.events if e.session == sid]
        assert seqs == sorted(seqs)


async def _recording_server(script: list[bytes], received: list[bytearray]):
    """A byte server: sends ``script`` chunks, one per chunk received, and keeps what it got."""

    async def handle(reader, writer):
        got = bytearray()
        received.append(got)
        writer.write(script[0])
        for chunk in script[1:]:
            data = await reader.read(65536)
            if not data:
                break
            got += data
            writer.write(chunk)
            await writer.drain()
        while data := await reader.read(65536):
            got += data
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_bytes_relayed_verbatim_both_ways_ten_sessions(loop_thread):
    rnd = os.urandom
    script = [b"220 tap ready\r\n"] + [rnd(3000) + b"\r\n" for _ in range(5)]
    received: list[bytearray] = []
    _, port = loop_thread.run(_recording_server(script, received))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    sent_by_clients, got_by_clients = {}, {}

    def client(i):
        sent, got = bytearray(), bytearray()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            got += s.recv(65536)
            for _ in range(5):
                msg = rnd(1000 + i) + b"\n\r\x00.\r\n"
                s.sendall(msg)
                sent += msg
                want = len(got) + 3002
                while len(got) < want:
                    got += s.recv(65536)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                got += chunk
        sent_by_clients[i], got_by_clients[i] = bytes(sent), bytes(got)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wait_closed(mem, 10)
    assert sorted(bytes(r) for r in received) == sorted(sent_by_clients.values())
    assert all(g == b"".join(script) for g in got_by_clients.values())


def test_upstream_unreachable_closes_client_and_says_why(loop_thread):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    proxy, mem = loop_thread.run(start_proxy(dead, protocol="pop3"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        assert c.recv(100) == b""
    wait_closed(mem, 1)
    close = [e for e in mem.events if e.kind is Kind.CLOSE][0]
    assert "unreachable" in close.reason.text and str(dead) in close.reason.text


def test_cli_rejects_bad_to():
    from mailtrace.cli import main

    result = CliRunner().invoke(main, ["proxy", "--to", "nowhere"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = CliRunner().invoke(main, ["proxy", "--to", "127.0.0.1:99999"])
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.skipif(not shutil.which("swaks"), reason="swaks is not installed")
def test_cli_proxy_with_swaks_writes_log_text_and_pcap(tmp_path, loop_thread):
    from mailtrace.transcript.jsonl import read_jsonl

    _, handler, port = loop_thread.run(start_aiosmtpd())
    log, text, pcap = tmp_path / "t.jsonl", tmp_path / "t.txt", tmp_path / "t.pcapng"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtrace", "proxy",
         "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{port}", "--protocol", "smtp", "--log", str(log),
         "--text", str(text), "--pcap", str(pcap), "--lang", "es"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        assert "escuchando en 127.0.0.1:" in banner  # --lang es: the banner is Spanish too
        pport = int(banner.split("127.0.0.1:")[1].split()[0])
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{pport}", "--to", "bob@lab.test",
                              "--from", "alice@lab.test", "--auth", "LOGIN", "--auth-user", "alice",
                              "--auth-password", "pw123"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        import time

        from mailtrace.transcript.jsonl import TranscriptFormatError

        for _ in range(200):
            try:
                if any(e.kind is Kind.CLOSE for e in read_jsonl(log)):
                    break
            except TranscriptFormatError:  # the annotator process has not written the header yet
                pass
            time.sleep(0.05)
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr
    events = list(read_jsonl(log))
    verbs = [e.verb.upper() for e in events if e.kind is Kind.COMMAND]
    assert verbs[:2] == ["EHLO", "AUTH"] and "QUIT" in verbs
    assert "pw123" not in log.read_text() and "pw123" not in text.read_text()
    assert '"alice"' in text.read_text()
    assert len(handler.messages) == 1
    assert pcap.stat().st_size > 500
    assert "S: 220 " in text.read_text()


def test_annotator_process_gives_the_same_transcript(tmp_path, loop_thread):
    """Parsing in a child process (the CLI's default) records what inline parsing records."""
    from mailtrace.proxy.annotator import Annotator
    from mailtrace.proxy.relay import Proxy, ProxyConfig
    from mailtrace.transcript.jsonl import JsonlSink, read_jsonl

    _, handler, port = loop_thread.run(start_aiosmtpd())
    inline, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    log = tmp_path / "a.jsonl"
    annotator = Annotator(lambda: [JsonlSink(log)])
    annotator.start()
    remote = Proxy(ProxyConfig(upstream_host="127.0.0.1", upstream_port=port, protocol="smtp"), annotator=annotator)
    loop_thread.run(remote.start())
    for p in (inline.port, remote.port):
        with smtplib.SMTP("127.0.0.1", p, timeout=10) as s:
            s.ehlo("same.test")
            s.login("alice", "pw")
            s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: same\r\n\r\nbody\r\n")
    wait_closed(mem, 1)
    loop_thread.run(remote.stop())
    annotator.close()
    events = list(read_jsonl(log))
    shape = lambda evs: [(e.kind, e.side, e.text()) for e in evs if e.kind is not Kind.OPEN]  # noqa: E731
    assert shape(events) == shape(mem.events)
    assert events[0].peer.mode == "proxy" and events[-1].kind is Kind.CLOSE
    assert all(b.t >= a.t for a, b in zip(events, events[1:]))


@pytest.mark.skipif(not shutil.which("smtp-sink"), reason="Postfix's smtp-sink is not installed (Debian: postfix)")
def test_swaks_through_proxy_to_postfix_smtp_sink(loop_thread):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *user, f"127.0.0.1:{port}", "10"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                import time

                time.sleep(0.05)
        proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
        out = subprocess.run(["swaks", "--server", f"127.0.0.1:{proxy.port}", "--to", "bob@lab.test",
                              "--from", "alice@lab.test"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_closed(mem, 1)
    finally:
        sink.terminate()
        sink.wait(5)
    verbs = [e.verb.upper() for e in mem.events if e.kind is Kind.COMMAND]
    assert verbs == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@pytest.mark.skipif(not shutil.which("mutt"), reason="mutt is not installed")
def test_mutt_sends_through_proxy(loop_thread, tmp_path):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    rc = tmp_path / "muttrc"
    rc.write_text(f'set smtp_url="smtp://127.0.0.1:{proxy.port}/"\nset from="alice@lab.test"\nset ssl_starttls=no\n'
                  'set ssl_force_tls=no\nset record=""\nset hostname="lab.test"\n')
    res = subprocess.run(["mutt", "-n", "-F", str(rc), "-s", "via mutt", "bob@lab.test"], input=b"hello from mutt\n",
                         capture_output=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    wait_closed(mem, 1)
    assert [e.verb.upper() for e in mem.events if e.kind is Kind.COMMAND] == ["HELO", "MAIL", "RCPT", "DATA", "QUIT"]
    body = [e for e in mem.events if e.kind is Kind.DATA]
    assert len(body) == 1 and b"hello from mutt" in body[0].raw and len(handler.messages) == 1
