"""The POP3 lab server on 127.0.0.1 (port 0), driven by real clients: poplib, curl, fetchmail, getmail."""

from __future__ import annotations

import asyncio
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mailtrace.protocols.pop3 import uidl_of
from mailtrace.servers.base import Listener, ListenerConfig
from mailtrace.servers.lab import Lab
from mailtrace.servers.pop3 import make_core_factory
from mailtrace.transcript.event import Kind
from mailtrace.transcript.recorder import MemorySink, Recorder
from waiting import wait_until

maildir = pytest.importorskip("mailtrace.store.maildir", reason="the Maildir store has not landed yet")

USERS = {"alice": "alice-pw", "bob": 'b o"b:pw'}
MSG = (b"From: bob@lab.test\r\nTo: alice@lab.test\r\nSubject: hello\r\n\r\n"
       b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast line\r\n")


class RunningServer:
    """A POP3 listener in a background event loop (one per test), on an ephemeral port."""

    def __init__(self, directory: Path, tls: bool = False, implicit: bool = False, idle_timeout=None,
                 users: dict[str, str] = USERS) -> None:
        self.sink = MemorySink()
        tls_context = None
        if tls or implicit:
            from mailtrace.tls import server_context

            tls_context = server_context(directory)
        self.lab = Lab(directory=directory, users=dict(users), recorder=Recorder([self.sink]),
                       tls_context=tls_context)
        self.store = self.lab.open_store()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        factory = make_core_factory(self.lab, idle_timeout=idle_timeout)
        self.listener = Listener(ListenerConfig("pop3", implicit_tls=implicit), factory, self.lab.recorder,
                                 tls_context)
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)
        self.port = self.listener.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def client(self, user="alice") -> poplib.POP3:
        pop = poplib.POP3("127.0.0.1", self.port, timeout=10)
        pop.user(user)
        pop.pass_(USERS[user])
        return pop


@pytest.fixture
def server(tmp_path):
    srv = RunningServer(tmp_path)
    yield srv
    srv.stop()


def deliver(store, n=3, user="alice"):
    return [store.deliver(user, MSG.replace(b"hello", f"hello {i}".encode())) for i in range(1, n + 1)]


def test_poplib_every_command(server):
    infos = deliver(server.store, 3)
    pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
    assert pop.getwelcome().startswith(b"+OK") and b"@lab.test>" in pop.getwelcome()
    caps = pop.capa()
    assert {"TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES"} <= set(caps) and "STLS" not in caps
    assert pop.user("alice").startswith(b"+OK")
    assert pop.pass_("alice-pw").startswith(b"+OK")
    count, octets = pop.stat()
    assert count == 3 and octets == sum(i.size for i in infos)
    _, listing, _ = pop.list()
    sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
    for n in (1, 2, 3):
        _, lines, got = pop.retr(n)
        body = b"\r\n".join(lines) + b"\r\n"
        assert body == MSG.replace(b"hello", f"hello {n}".encode())  # byte for byte, unstuffed
        assert len(body) == sizes[n] == infos[n - 1].size  # LIST size = octets RETR sends
    assert pop.list(2).split()[2] == str(sizes[2]).encode()
    _, top, _ = pop.top(1, 1)
    assert top[-2:] == [b"", b"first line"]
    _, uidls, _ = pop.uidl()
    assert [u.split()[1].decode() for u in uidls] == [uidl_of(i.uid, server.store.mailbox("alice").uidvalidity)
                                                       for i in infos]
    assert pop.uidl(3).split()[2] == uidls[2].split()[1]
    assert pop.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="already deleted"):
        pop.retr(1)
    assert pop.stat()[0] == 2
    assert pop.rset().startswith(b"+OK")
    assert pop.stat()[0] == 3
    assert pop.noop().startswith(b"+OK")
    pop.dele(2)
    assert pop.quit().startswith(b"+OK")
    mailbox = server.store.mailbox("alice")
    mailbox.refresh()
    assert [m.uid for m in mailbox.messages()] == [infos[0].uid, infos[2].uid]


def test_apop(server):
    deliver(server.store, 1)
    pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
    assert pop.apop("alice", "alice-pw").startswith(b"+OK alice's maildrop has 1")
    pop.quit()
    pop = poplib.POP3("127.0.0.1", server.port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.apop("alice", "wrong")
    pop.quit()


def test_password_with_space_quote_and_colon(server):
    deliver(server.store, 1, user="bob")
    pop = server.client("bob")
    assert pop.stat()[0] == 1
    pop.quit()
    secrets = [e for e in server.sink.events if e.verb == "PASS" and e.kind is Kind.COMMAND]
    assert secrets and all(e.shown() == b"PASS ********\r\n" for e in secrets)


def test_lock_refuses_second_session_and_dele_without_quit_deletes_nothing(server):
    deliver(server.store, 2)
    first = server.client()
    first.dele(1)
    first.dele(2)
    second = poplib.POP3("127.0.0.1", server.port, timeout=10)
    second.user("alice")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_("alice-pw")
    first.sock.close()  # dropped without QUIT: nothing deleted, lock released
    first.file.close()
    for _ in range(100):
        try:
            second.user("alice")
            second.pass_("alice-pw")
            break
        except poplib.error_proto:
            time.sleep(0.05)
    assert second.stat()[0] == 2
    second.quit()


def test_uidl_stable_across_restart(tmp_path):
    srv = RunningServer(tmp_path)
    deliver(srv.store, 3)
    pop = srv.client()
    before = pop.uidl()[1]
    pop.dele(2)
    pop.quit()
    srv.stop()
    srv = RunningServer(tmp_path)  # a new store object on the same directory
    try:
        pop = srv.client()
        after = pop.uidl()[1]
        pop.quit()
    finally:
        srv.stop()
    ids = lambda lines: [line.split()[1] for line in lines]  # noqa: E731
    assert ids(after) == [ids(before)[0], ids(before)[2]]


def test_stls_and_implicit_tls(tmp_path):
    from mailtrace.tls import client_context

    srv = RunningServer(tmp_path, tls=True)
    try:
        deliver(srv.store, 1)
        pop = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        assert "STLS" in pop.capa()
        ctx = client_context(tmp_path)
        ctx.check_hostname = False
        pop.stls(ctx)
        assert "STLS" not in pop.capa()
        pop.user("alice")
        pop.pass_("alice-pw")
        assert pop.retr(1)[1][2] == b"Subject: hello 1"
        pop.quit()
        assert any(e.kind is Kind.TLS for e in srv.sink.events)
    finally:
        srv.stop()
    srv = RunningServer(tmp_path, implicit=True)
    try:
        ctx = client_context(tmp_path)
        ctx.check_hostname = False
        pop = poplib.POP3_SSL("127.0.0.1", srv.port, context=ctx, timeout=10)
        assert "STLS" not in pop.capa()
        pop.user("alice")
        pop.pass_("alice-pw")
        assert pop.stat()[0] == 1
        pop.quit()
    finally:
        srv.stop()


def raw_session(port: int, data: bytes, wait_for: bytes = b"", timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        got = b""
        while b"\r\n" not in got:
            got += sock.recv(4096)
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (not wait_for or wait_for not in got) and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_bad_input_server_stays_up(server):
    deliver(server.store, 1)
    good = server.client()
    garbage = os.urandom(20000) + b"\r\n\x00\xff\r\nRETR 1\r\n"
    reply = raw_session(server.port, garbage + b"QUIT\r\n", wait_for=b"signing off")
    assert b"Traceback" not in reply and reply.count(b"-ERR") >= 1
    bad = [b"USER", b"PASS x", b"APOP alice", b"APOP alice 0123", b"STAT", b"LIST 1", b"RETR 1", b"DELE 0",
           b"TOP 1", b"UIDL x", b"STLS", b"CAPA x", b"NOOP", b"RSET", b"QUIT x", b"\x80\x81", b"RETR 99999999999"]
    reply = raw_session(server.port, b"".join(line + b"\r\n" for line in bad) + b"QUIT\r\n", wait_for=b"signing off")
    assert reply.count(b"-ERR") == len(bad) and reply.endswith(b"signing off\r\n")
    assert good.stat()[0] == 1  # the other client was served all along
    good.quit()


def test_transcript_events(server):
    deliver(server.store, 1)
    pop = server.client()
    pop.retr(1)
    pop.quit()
    events = [e for e in server.sink.events if e.protocol == "pop3"]
    kinds = [(e.kind, e.verb) for e in events if e.kind in (Kind.COMMAND, Kind.DATA)]
    assert kinds == [(Kind.COMMAND, "USER"), (Kind.COMMAND, "PASS"), (Kind.COMMAND, "RETR"), (Kind.DATA, "RETR"),
                     (Kind.COMMAND, "QUIT")]
    data = [e for e in events if e.kind is Kind.DATA][0]
    assert data.raw.endswith(b"\r\n.\r\n") and b"\r\n..starts with a dot\r\n" in data.raw


def test_autologout_is_silent_and_keeps_mail(tmp_path):
    srv = RunningServer(tmp_path, idle_timeout=0.3)
    try:
        deliver(srv.store, 1)
        pop = srv.client()
        pop.dele(1)
        wait_until(lambda: any(e.kind is Kind.CLOSE for e in list(srv.sink.events)), what="the autologout")
        with pytest.raises((EOFError, poplib.error_proto, ConnectionError, OSError)):
            pop.noop()
        pop = srv.client()  # the lock is free again and the message is still there
        assert pop.stat()[0] == 1
        pop.quit()
    finally:
        srv.stop()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_pop3(server):
    infos = deliver(server.store, 2)
    url = f"pop3://127.0.0.1:{server.port}/"
    out = subprocess.run(["curl", "-s", "--user", "alice:alice-pw", url], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"".join(f"{n} {i.size}\r\n".encode() for n, i in enumerate(infos, 1))
    out = subprocess.run(["curl", "-s", "--user", "alice:alice-pw", url + "2"], capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout == MSG.replace(b"hello", b"hello 2")
    commands = {e.verb for e in server.sink.events if e.kind is Kind.COMMAND}
    assert "CAPA" in commands and ("APOP" in commands or "PASS" in commands)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("fetchmail"), reason="fetchmail is not installed")
def test_fetchmail(server, tmp_path):
    deliver(server.store, 2)
    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    mda = tmp_path / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp -p {out_dir} XXXXXX.eml)"\n')
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 with proto POP3 service {server.port} auth password\n'
                  f'  user "alice" there with password "alice-pw" is "alice" here\n'
                  f'  sslproto "" keep mda "{mda}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    result = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v"], capture_output=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    files = list(out_dir.iterdir())
    assert len(files) == 2, result.stdout.decode() + result.stderr.decode()
    assert all(b"Subject: hello" in f.read_bytes() for f in files)
    assert len(server.store.mailbox("alice").messages()) == 2  # keep: nothing deleted


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("getmail"), reason="getmail (getmail6) is not installed")
def test_getmail(server, tmp_path):
    deliver(server.store, 2)
    dest = tmp_path / "dest"
    dest.mkdir()
    mda = tmp_path / "mda.sh"  # an external MDA: getmail refuses Maildir delivery as root
    mda.write_text(f'#!/bin/sh\ncat > "$(mktemp -p {dest} XXXXXX.eml)"\n')
    mda.chmod(0o755)
    conf = tmp_path / "getmailrc"
    conf.write_text(f"[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {server.port}\n"
                    f"username = alice\npassword = alice-pw\n\n"
                    f"[destination]\ntype = MDA_external\npath = {mda}\nallow_root_commands = true\n\n"
                    f"[options]\nread_all = true\ndelete = true\nmessage_log_syslog = false\n")
    result = subprocess.run(["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(conf)], capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    fetched = sorted(p.read_bytes() for p in dest.iterdir())
    assert len(fetched) == 2 and all(b"Subject: hello" in m for m in fetched)
    mailbox = server.store.mailbox("alice")
    mailbox.refresh()
    assert mailbox.messages() == []  # delete = true: DELE + QUIT committed


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_stls_required(tmp_path):
    srv = RunningServer(tmp_path, tls=True)
    try:
        deliver(srv.store, 1)
        ca = tmp_path / "tls" / "ca.pem"
        out = subprocess.run(["curl", "-s", "--ssl-reqd", "--cacert", str(ca), "--resolve", f"lab.test:{srv.port}:127.0.0.1",
                              "--user", "alice:alice-pw", f"pop3://lab.test:{srv.port}/1"], capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == MSG.replace(b"hello", b"hello 1")
        verbs = [e.verb or e.kind.value for e in srv.sink.events if e.kind in (Kind.COMMAND, Kind.TLS)]
        assert verbs.index("STLS") < verbs.index("tls") < verbs.index("RETR")
        assert verbs.count("CAPA") == 2  # capabilities asked again after the switch (RFC 2595 §4)
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("mutt") or not shutil.which("script"),
                    reason="mutt and script (util-linux, for a terminal) are needed")
def test_mutt_over_stls(tmp_path):
    """mutt opens the POP3 maildrop: STLS with the lab CA, APOP, UIDL, TOP; the index lists the message."""
    srv = RunningServer(tmp_path / "lab", tls=True)
    try:
        deliver(srv.store, 1)
        home = tmp_path / "home"
        (home / "Mail").mkdir(parents=True)
        ca = tmp_path / "lab" / "tls" / "ca.pem"
        mutt = (f"mutt -n -F /dev/null -e 'set folder={home}/Mail' -e 'set pop_pass={USERS['alice']}' "
                f"-e 'set ssl_ca_certificates_file={ca}' -e 'set ssl_force_tls=yes' -e 'push <exit>' "
                f"-f pop://alice@127.0.0.1:{srv.port}/")
        result = subprocess.run(["script", "-qec", mutt, "/dev/null"], capture_output=True, timeout=30,
                                env=dict(os.environ, HOME=str(home), TERM="xterm"), stdin=subprocess.DEVNULL)
        screen = result.stdout.decode("utf-8", "replace")
        assert result.returncode == 0 and "hello 1" in screen, screen[-2000:]
        verbs = [e.verb for e in srv.sink.events if e.kind is Kind.COMMAND]
        assert "STLS" in verbs and "UIDL" in verbs and verbs[-1] == "QUIT"
        assert any(e.kind is Kind.TLS for e in srv.sink.events)
    finally:
        srv.stop()


def test_each_login_sees_mail_delivered_since(server):
    deliver(server.store, 1)
    pop = server.client()
    assert pop.stat()[0] == 1
    deliver(server.store, 1)  # through the store, while the first session is open
    assert pop.stat()[0] == 1  # the listing is frozen for the session (RFC 1939 §4)
    pop.quit()
    new = server.lab.mail_dir / "alice" / "new"  # a file dropped by another program (procmail, Dovecot)
    (new / "1800000000.M1P1.elsewhere").write_bytes(b"Subject: dropped\n\nhi\n")
    pop = server.client()
    assert pop.stat()[0] == 3
    assert pop.retr(3)[1] == [b"Subject: dropped", b"", b"hi"]
    pop.quit()


def test_the_sign_off_counts_what_is_left_after_another_session_removed_mail(server):
    """QUIT's "(N messages left)" is the maildrop's real count: a message removed meanwhile by
    another session (here straight from the store, as an IMAP EXPUNGE does) is not in it."""
    infos = deliver(server.store, 5)
    pop = server.client()
    assert pop.stat()[0] == 5
    box = server.store.mailbox("alice")
    box.expunge([infos[0].uid])  # another session's EXPUNGE of message 1
    pop.dele(3)
    assert b"(3 messages left" in pop.quit()  # 5 - 1 expunged elsewhere - 1 deleted here
