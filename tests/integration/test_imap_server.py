"""The IMAP lab server on 127.0.0.1 (port 0), driven by real clients: imaplib, raw sockets, curl, mbsync."""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mailtrace.servers.base import Listener, ListenerConfig
from mailtrace.servers.imap import make_core_factory
from mailtrace.servers.lab import Lab
from mailtrace.transcript.event import Kind
from mailtrace.transcript.recorder import MemorySink, Recorder
from test_imap_helpers import MULTI, PASSWORD, SIMPLE, USERS


class RunningServer:
    """An IMAP listener in a background event loop, on an ephemeral port."""

    def __init__(self, directory: Path, tls: bool = False, implicit: bool = False, loop_factory=None) -> None:
        self.sink = MemorySink()
        tls_context = None
        if tls or implicit:
            from mailtrace.tls import server_context

            tls_context = server_context(directory)
        self.lab = Lab(directory=directory, users=dict(USERS), recorder=Recorder([self.sink]), tls_context=tls_context)
        self.store = self.lab.open_store()
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener = Listener(ListenerConfig("imap", implicit_tls=implicit), make_core_factory(self.lab),
                                 self.lab.recorder, tls_context)
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        self.port = self.listener.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.store.close()

    def client(self, user: str = "alice") -> imaplib.IMAP4:
        m = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        m.login(user, USERS[user])
        return m


@pytest.fixture
def server(tmp_path):
    srv = RunningServer(tmp_path)
    srv.store.deliver("alice", SIMPLE)
    srv.store.deliver("alice", MULTI)
    yield srv
    srv.stop()


def ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def test_imaplib_every_command(server):
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    assert "IMAP4REV1" in m.capabilities and "IDLE" in m.capabilities
    ok(m.noop())
    ok(m.login("alice", PASSWORD))  # imaplib sends it as a quoted string with escapes
    ok(m.namespace())
    assert ok(m.select("INBOX")) == [b"2"]
    assert m.untagged_responses.get("UIDVALIDITY") and m.untagged_responses.get("UIDNEXT") == [b"3"]
    assert ok(m.search(None, "FROM", '"bob"')) == [b"1"]
    assert ok(m.uid("SEARCH", "ALL")) == [b"1 2"]
    data = ok(m.fetch("1", "(BODY[] FLAGS)"))
    assert data[0][1] == SIMPLE and b"\\Seen" in data[1]
    data = ok(m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE ENVELOPE)"))
    assert b"MIXED" in data[2][0] + data[3]
    ok(m.store("2", "+FLAGS", "(\\Flagged)"))
    ok(m.uid("STORE", "2", "-FLAGS", "(\\Flagged)"))
    ok(m.create("Work"))
    ok(m.create("Temp"))
    ok(m.rename("Temp", "Trash"))
    ok(m.subscribe("Work"))
    ok(m.unsubscribe("Work"))
    ok(m.subscribe("Trash"))
    assert b'() "." Trash' in ok(m.lsub())[0]
    names = b"\n".join(ok(m.list()))
    assert b"INBOX" in names and b"Work" in names and b"Trash" in names
    assert ok(m.status("Work", "(MESSAGES UIDNEXT)")) == [b"Work (MESSAGES 0 UIDNEXT 1)"]
    typ, data = m.append("Work", "(\\Seen)", imaplib.Time2Internaldate(time.time()), b"Subject: appended\r\n\r\nx\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0]
    ok(m.copy("1", "Work"))
    ok(m.uid("COPY", "2", "Work"))
    ok(m._simple_command("MOVE", "1", "Trash"))
    ok(m.uid("MOVE", "2", "Trash"))
    assert ok(m.search(None, "ALL")) == [b""]
    ok(m.check())
    ok(m.select("Work"))
    ok(m.store("1:*", "+FLAGS.SILENT", "(\\Deleted)"))
    ok(m.uid("EXPUNGE", "1"))
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1", b"2", b"1"]  # UID EXPUNGE 1, then 2 and 1 (highest first)
    ok(m.close())
    ok(m.select("Trash", readonly=True))
    ok(m.close())
    ok(m.delete("Trash"))
    assert m.logout()[0] == "BYE"


def _raw(port: int):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return sock, f


def _until(f, tag: bytes) -> bytes:
    out = b""
    while True:
        line = f.readline()
        if not line:
            return out
        out += line
        if line.startswith(tag + b" "):
            return out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_fetch_of_many_large_messages_arrives_whole_and_in_order(tmp_path, loop):
    """A FETCH answer is written as its pieces (servers/base.py, writev on uvloop), not joined."""
    factory = None
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    srv = RunningServer(tmp_path, loop_factory=factory)
    try:
        bodies = [b"Subject: big %d\r\n\r\n" % n + b"".join(b"%05d line of message %d\r\n" % (i, n) for i in range(800))
                  for n in range(1, 41)]  # ~20 KB each
        for body in bodies:
            srv.store.deliver("alice", body)
        m = srv.client()
        m.select("INBOX", readonly=True)
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        got = [item[1] for item in data if isinstance(item, tuple)]
        assert got == bodies
        m.logout()
    finally:
        srv.stop()


def test_login_with_a_literal_password_and_authenticate_plain(server):
    sock, f = _raw(server.port)
    sock.sendall(b"a1 LOGIN {5}\r\n")
    assert f.readline() == b"+ Ready for literal data\r\n"
    sock.sendall(b"alice {%d}\r\n" % len(PASSWORD))
    assert f.readline() == b"+ Ready for literal data\r\n"
    sock.sendall(PASSWORD.encode() + b"\r\n")
    assert b"a1 OK" in _until(f, b"a1")
    sock.close()
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    assert m.authenticate("PLAIN", lambda _: b"\0alice\0" + PASSWORD.encode())[0] == "OK"
    m.logout()
    shown = b"".join(e.shown() for e in server.sink.events)
    assert PASSWORD.encode() not in shown


def test_idle_is_woken_by_a_delivery(server):
    sock, f = _raw(server.port)
    sock.sendall(b'a1 LOGIN alice "%s"\r\na2 SELECT INBOX\r\n' % PASSWORD.replace("\\", "\\\\").replace('"', '\\"').encode())
    _until(f, b"a2")
    sock.sendall(b"a3 IDLE\r\n")
    assert f.readline() == b"+ idling\r\n"
    sock.settimeout(5)  # pushed without any client command (RFC 2177); 5 s only guards against a hang
    server.store.deliver("alice", b"Subject: pushed\r\n\r\nnew\r\n")
    assert f.readline() == b"* 3 EXISTS\r\n"
    assert f.readline() == b"* 3 RECENT\r\n"
    sock.settimeout(10)
    sock.sendall(b"DONE\r\n")
    assert f.readline() == b"a3 OK IDLE terminated\r\n"
    sock.close()


def test_idle_is_woken_by_smtp(server):
    smtp_mod = pytest.importorskip("mailtrace.servers.smtp")
    import smtplib

    listener = Listener(ListenerConfig("smtp"), smtp_mod.make_core_factory(server.lab), server.lab.recorder)
    asyncio.run_coroutine_threadsafe(listener.start(), server.loop).result(10)
    try:
        sock, f = _raw(server.port)
        sock.sendall(b"a1 LOGIN bob bob\r\na2 SELECT INBOX\r\na3 IDLE\r\n")
        assert b"+ idling" in _until(f, b"+")
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as s:
            s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: by smtp\r\n\r\nhello bob\r\n")
        sock.settimeout(5)  # pushed, no client command needed; 5 s only guards against a hang
        assert f.readline() == b"* 1 EXISTS\r\n"
        sock.settimeout(10)
        sock.sendall(b"DONE\r\na4 FETCH 1 BODY[TEXT]\r\n")
        assert b"hello bob\r\n" in _until(f, b"a4")
        sock.close()
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), server.loop).result(10)


def test_expunge_in_one_session_is_reported_to_another(server):
    a, b = server.client(), server.client()
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    ok(a.store("1", "+FLAGS", "(\\Deleted)"))
    assert ok(a.expunge()) == [b"1"]
    ok(b.noop())
    assert b.untagged_responses.get("EXPUNGE") == [b"1"]
    assert ok(b.fetch("1", "UID"))[0] == b"1 (UID 2)"
    a.logout()
    b.logout()


def test_uids_and_uidvalidity_survive_a_restart(tmp_path):
    srv = RunningServer(tmp_path)
    try:
        m = srv.client()
        m.append("INBOX", None, None, SIMPLE)
        m.append("INBOX", None, None, MULTI)
        ok(m.select("INBOX"))
        validity = m.untagged_responses["UIDVALIDITY"][0]
        ok(m.store("1", "+FLAGS", "(\\Deleted)"))
        ok(m.expunge())
        m.logout()
    finally:
        srv.stop()
    srv = RunningServer(tmp_path)
    try:
        m = srv.client()
        ok(m.select("INBOX"))
        assert m.untagged_responses["UIDVALIDITY"][0] == validity
        assert m.untagged_responses["UIDNEXT"] == [b"3"]
        assert ok(m.uid("SEARCH", "ALL")) == [b"2"]
        m.logout()
    finally:
        srv.stop()


def test_bad_input_server_stays_up(server):
    good = server.client()
    ok(good.select("INBOX"))
    sock, f = _raw(server.port)
    # (garbage lines: two BADs; twenty in a row would end the session, test_imap_core)
    sock.sendall(os.urandom(30_000).replace(b"\n", b"") + b"\r\n\x00\xff\r\n")
    sock.sendall(b"z1 LOGIN alice {1073741824}\r\n")
    sock.sendall(b'z2 LOGIN alice "%s"\r\n' % PASSWORD.replace("\\", "\\\\").replace('"', '\\"').encode())
    sock.sendall(b'z3 SELECT "../../etc"\r\nz4 CREATE "../../etc"\r\nz5 FETCH 1 BODY[]\r\nz6 LOGOUT\r\n')
    sock.settimeout(10)
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    assert b"z1 NO [TOOBIG]" in out and b"z2 OK" in out and b"z3 NO" in out and b"z4 NO" in out
    assert b"z5 BAD" in out and b"z6 OK" in out and b"Traceback" not in out
    sock.close()
    assert not (server.lab.directory / "etc").exists()
    assert ok(good.fetch("1", "(UID)"))  # the other client was served all along
    good.logout()
    closes = [e for e in server.sink.events if e.kind is Kind.CLOSE]
    assert not any("internal error" in (e.reason.text if e.reason else "") for e in closes)


def test_starttls_and_implicit_tls(tmp_path):
    from mailtrace.tls import client_context

    srv = RunningServer(tmp_path, tls=True)
    try:
        m = imaplib.IMAP4("127.0.0.1", srv.port, timeout=10)
        assert "STARTTLS" in m.capabilities
        ctx = client_context(tmp_path)
        ctx.check_hostname = False
        m.starttls(ctx)
        assert "STARTTLS" not in m.capabilities
        ok(m.login("alice", PASSWORD))
        m.logout()
        assert any(e.kind is Kind.TLS for e in srv.sink.events)
    finally:
        srv.stop()
    srv = RunningServer(tmp_path, implicit=True)
    try:
        ctx = client_context(tmp_path)
        ctx.check_hostname = False
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port, ssl_context=ctx, timeout=10)
        assert "STARTTLS" not in m.capabilities
        ok(m.login("alice", PASSWORD))
        m.logout()
    finally:
        srv.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_list_and_fetch(tmp_path):
    users = {"alice": PASSWORD}
    srv = RunningServer(tmp_path)
    srv.lab.users.update(users)
    srv.store.deliver("bob", SIMPLE)
    try:
        base = f"imap://127.0.0.1:{srv.port}"
        run = lambda *args: subprocess.run(["curl", "-sS", "--max-time", "20", "-u", "bob:bob", *args],
                                           capture_output=True, timeout=30)
        listing = run(base + "/")
        assert listing.returncode == 0, listing.stderr
        assert b'"." INBOX' in listing.stdout
        fetched = run(base + "/INBOX;UID=1")
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == SIMPLE
        searched = run(base + "/INBOX?SUBJECT%20hello")
        assert b"SEARCH 1" in searched.stdout
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) is not installed")
def test_mbsync_pulls_the_mailbox(server, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (tmp_path / "pass").write_text("bob")
    server.store.deliver("bob", SIMPLE)
    server.store.deliver("bob", MULTI)
    server.store.create_mailbox("bob", "Work")
    conf = tmp_path / "mbsyncrc"
    conf.write_text(f"""IMAPAccount lab
Host 127.0.0.1
Port {server.port}
User bob
PassCmd "cat {tmp_path / 'pass'}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account lab

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
""")
    res = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    files = sorted((local / "INBOX" / "new").iterdir()) + sorted((local / "INBOX" / "cur").iterdir())
    bodies = sorted(re.sub(rb"X-TUID: .*\n", b"", p.read_bytes()).replace(b"\r\n", b"\n") for p in files)
    assert bodies == sorted([SIMPLE.replace(b"\r\n", b"\n"), MULTI.replace(b"\r\n", b"\n")])
    assert (local / "Work").is_dir()
    # a second run with nothing new is a no-op, and a flag change on the server comes down
    server.store.mailbox("bob").set_flags(1, {"\\Flagged"})
    res = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert any(re.search(r":2,.*F", p.name) for p in (local / "INBOX" / "cur").iterdir())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("script") is None,
                    reason="mutt (and script, for its terminal) is not installed")
def test_mutt_reads_saves_and_deletes(server, tmp_path):
    import shlex
    import signal

    server.store.deliver("bob", SIMPLE)
    server.store.deliver("bob", MULTI)
    server.store.create_mailbox("bob", "Saved")
    out = tmp_path / "piped.eml"
    rc = tmp_path / "muttrc"
    rc.write_text(f"""set folder="imap://bob@127.0.0.1:{server.port}/"
set spoolfile="+INBOX"
set imap_pass="bob"
set ssl_starttls=no
set ssl_force_tls=no
set header_cache=""
set message_cachedir=""
set wait_key=no
set confirmappend=no
set delete=yes
set sleep_time=0
set imap_keepalive=900
""")
    keys = f"<pipe-message>cat > {out}<enter><save-message>=Saved<enter><sync-mailbox><quit>"
    script = tmp_path / "mutt.sh"
    script.write_text(shlex.join(["mutt", "-n", "-F", str(rc), "-e", f"push '{keys}'"]) + "\n")
    proc = subprocess.Popen(["script", "-qec", f"sh {script}", "/dev/null"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TERM="xterm", HOME=str(tmp_path)), start_new_session=True)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("mutt did not finish")
    assert out.read_bytes().replace(b"\r\n", b"\n").endswith(b"First message body.\nSecond line.\n")
    saved = server.store.mailbox("bob", "Saved")
    saved.refresh()
    inbox = server.store.mailbox("bob")
    inbox.refresh()
    assert [m.size for m in saved.messages()] == [len(SIMPLE)] and len(inbox.messages()) == 1
    verbs = {e.verb for e in server.sink.events if e.kind is Kind.COMMAND}
    assert {"LOGIN", "SELECT", "UID FETCH"} <= verbs or {"AUTHENTICATE", "SELECT"} <= verbs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) is not installed")
def test_mbsync_over_starttls_with_the_lab_ca(tmp_path):
    srv = RunningServer(tmp_path / "lab", tls=True)
    try:
        srv.store.deliver("bob", SIMPLE)
        local = tmp_path / "local"
        local.mkdir()
        conf = tmp_path / "mbsyncrc"
        conf.write_text(f"""IMAPAccount lab
Host localhost
Port {srv.port}
User bob
Pass bob
SSLType STARTTLS
CertificateFile {tmp_path / 'lab' / 'tls' / 'ca.pem'}

IMAPStore remote
Account lab

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel sync
Far :remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
""")
        res = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, timeout=60)
        assert res.returncode == 0, res.stderr + res.stdout
        files = list((local / "INBOX" / "new").iterdir()) + list((local / "INBOX" / "cur").iterdir())
        assert len(files) == 1 and b"First message body." in files[0].read_bytes()
        assert any(e.kind is Kind.TLS for e in srv.sink.events)
    finally:
        srv.stop()


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="s-nail is not installed")
def test_s_nail_lists_and_prints(server, tmp_path):
    server.store.deliver("bob", SIMPLE)
    server.store.deliver("bob", MULTI)
    cmd = ["s-nail", "-:/", "-N", "-R", "-#", "-Sv15-compat", "-Spassword=bob", "-f",
           f"imap://bob@127.0.0.1:{server.port}/INBOX"]
    res = subprocess.run(cmd, input=b"headers\nprint 1\nquit\n", capture_output=True, timeout=30,
                         env=dict(os.environ, HOME=str(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert b"hello there" in res.stdout and "café report".encode() in res.stdout
    assert b"First message body.\nSecond line.\n" in res.stdout


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_over_imap(server, tmp_path):
    server.store.deliver("bob", SIMPLE)
    server.store.deliver("bob", MULTI)
    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp -p {out_dir} XXXXXX.eml)"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 with proto IMAP service {server.port} auth password\n'
                  f'  user "bob" there with password "bob" is "bob" here\n'
                  f'  sslproto "" keep mda "{mda}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    res = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v"], capture_output=True,
                         timeout=60, env=env)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    got = sorted(p.read_bytes().replace(b"\r\n", b"\n") for p in out_dir.iterdir())
    assert len(got) == 2 and got[0].endswith(b"First message body.\nSecond line.\n")
    assert all("\\Seen" in m.flags for m in server.store.mailbox("bob").messages())


def test_idle_sees_expunge_and_flag_changes_from_another_session(server):
    sock, f = _raw(server.port)
    sock.sendall(b"a1 LOGIN bob bob\r\n")
    _until(f, b"a1")
    server.store.deliver("bob", SIMPLE)
    server.store.deliver("bob", MULTI)
    sock.sendall(b"a2 SELECT INBOX\r\na3 IDLE\r\n")
    assert b"+ idling" in _until(f, b"+")
    other = server.client("bob")
    ok(other.select("INBOX"))
    sock.settimeout(5)
    ok(other.store("2", "+FLAGS", "(\\Flagged)"))
    assert f.readline() == b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n"
    ok(other.store("1", "+FLAGS", "(\\Deleted)"))
    ok(other.expunge())
    lines = [f.readline(), f.readline()]
    assert lines[-1] == b"* 1 EXPUNGE\r\n", lines
    sock.settimeout(10)
    sock.sendall(b"DONE\r\na4 LOGOUT\r\n")
    assert b"a4 OK" in _until(f, b"a4")
    other.logout()
