"""The proxy between Python's poplib/imaplib and Dovecot (a real POP3/IMAP server, started with a
private configuration on free loopback ports): every command and response in order, multi-line
responses and literals framed whole, STLS/STARTTLS relayed or intercepted."""

from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mailtrace.transcript.event import Kind
from test_proxy_support import loop_thread, start_proxy, wait_closed  # noqa: F401

NOBODY = 65534
MESSAGE = b"From: carol@lab.test\r\nTo: alice@lab.test\r\nSubject: through the proxy\r\n\r\nHello Alice.\r\n.dot line\r\n"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("dovecot") or os.geteuid() != 0,
                                 reason="needs Dovecot (Debian: dovecot-imapd dovecot-pop3d) and root to start it")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dovecot():
    from mailtrace.tls import ensure_lab_tls

    d = Path(tempfile.mkdtemp(prefix="dvp-"))
    d.chmod(0o755)
    tls = ensure_lab_tls(d)
    mail = d / "mail"
    new = mail / "alice" / "new"
    new.mkdir(parents=True)
    for sub in ("cur", "tmp"):
        (mail / "alice" / sub).mkdir()
    (new / "1700000000.M1P1.lab").write_bytes(MESSAGE)
    for dirpath, dirnames, filenames in os.walk(mail):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, NOBODY, NOBODY)
    imap_port, pop3_port = _free_port(), _free_port()
    conf = d / "dovecot.conf"
    conf.write_text(f"""
protocols = imap pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{tls.server_cert}
ssl_key = <{tls.server_key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = static
  args = password=pw
}}
userdb {{
  driver = static
  args = uid={NOBODY} gid={NOBODY} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
    subprocess.run(["dovecot", "-c", str(conf)], check=True, timeout=30)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", imap_port), 1).close()
            socket.create_connection(("127.0.0.1", pop3_port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("Dovecot did not start: " + (d / "dovecot.log").read_text())
            time.sleep(0.05)
    yield {"imap": imap_port, "pop3": pop3_port, "dir": d, "ca": str(tls.ca_cert)}
    pid = None
    try:
        pid = int((d / "run" / "master.pid").read_text())
    except (OSError, ValueError):
        pass
    subprocess.run(["doveadm", "-c", str(conf), "stop"], capture_output=True, timeout=30)
    if pid:
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)


def _commands(events):
    return [e.verb.upper() for e in events if e.kind is Kind.COMMAND]


def test_poplib_through_proxy_to_dovecot(loop_thread, dovecot):
    proxy, mem = loop_thread.run(start_proxy(dovecot["pop3"], protocol="pop3"))
    pop = poplib.POP3("127.0.0.1", proxy.port, timeout=10)
    pop.user("alice")
    pop.pass_("pw")
    count, _ = pop.stat()
    pop.list()
    _, lines, _ = pop.retr(1)
    pop.quit()
    wait_closed(mem, 1)
    assert count == 1 and b"Hello Alice." in lines
    assert _commands(mem.events) == ["USER", "PASS", "STAT", "LIST", "RETR", "QUIT"]
    bodies = [e for e in mem.events if e.kind is Kind.DATA]
    assert any(b"Subject: through the proxy" in e.raw and e.raw.endswith(b"\r\n.\r\n") for e in bodies)
    assert all(b"pw" not in e.shown() for e in mem.events if e.verb.upper() == "PASS")
    replies = [e for e in mem.events if e.kind is Kind.REPLY]
    assert replies[0].raw.startswith(b"+OK") and all(r.code in ("+OK", "-ERR") for r in replies)


def test_imaplib_through_proxy_to_dovecot(loop_thread, dovecot):
    proxy, mem = loop_thread.run(start_proxy(dovecot["imap"], protocol="imap"))
    imap = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=10)
    imap.login("alice", "pw")
    imap.select("INBOX")
    typ, data = imap.fetch("1", "(BODY.PEEK[])")
    imap.logout()
    wait_closed(mem, 1)
    assert typ == "OK" and MESSAGE in data[0][1]
    cmds = _commands(mem.events)
    assert cmds[-4:] == ["LOGIN", "SELECT", "FETCH", "LOGOUT"]
    literals = [e for e in mem.events if e.kind is Kind.LITERAL]
    assert [e.raw for e in literals] == [MESSAGE]
    login = next(e for e in mem.events if e.verb.upper() == "LOGIN")
    assert '"alice"' in login.text() and "pw" not in login.text().split("[")[0].split()[-1]
    tagged = [e for e in mem.events if e.kind is Kind.REPLY and e.tag not in ("", "*", "+")]
    assert [e.code for e in tagged][-4:] == ["OK", "OK", "OK", "OK"]


def test_pop3_stls_intercepted_and_imap_starttls_relayed(loop_thread, dovecot, tmp_path):
    import ssl

    ctx = ssl.create_default_context(cafile=dovecot["ca"])
    proxy, mem = loop_thread.run(start_proxy(dovecot["pop3"], protocol="pop3", intercept_tls=True, lab_dir=tmp_path))
    from mailtrace.tls import client_context

    pop = poplib.POP3("127.0.0.1", proxy.port, timeout=10)
    pop.stls(context=client_context(tmp_path))  # the proxy's lab CA (tmp_path), not Dovecot's
    pop.user("alice")
    pop.pass_("pw")
    pop.stat()
    pop.quit()
    wait_closed(mem, 1)
    tls = next(i for i, e in enumerate(mem.events) if e.kind is Kind.TLS)
    assert mem.events[tls].tls.intercepted is True
    assert _commands(mem.events[tls:]) == ["USER", "PASS", "STAT", "QUIT"]

    proxy2, mem2 = loop_thread.run(start_proxy(dovecot["imap"], protocol="imap"))
    imap = imaplib.IMAP4("127.0.0.1", proxy2.port, timeout=10)
    imap.starttls(ssl_context=ctx)  # the client sees Dovecot's own certificate
    imap.login("alice", "pw")
    imap.logout()
    wait_closed(mem2, 1)
    tls = next(i for i, e in enumerate(mem2.events) if e.kind is Kind.TLS)
    assert mem2.events[tls].tls.intercepted is False
    assert _commands(mem2.events[tls:]) == []


@pytest.mark.skipif(not shutil.which("fetchmail"), reason="fetchmail is not installed")
@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_fetchmail_through_proxy_to_dovecot(loop_thread, dovecot, tmp_path, protocol):
    proxy, mem = loop_thread.run(start_proxy(dovecot[protocol], protocol=protocol))
    rc = tmp_path / "fetchmailrc"
    out = tmp_path / "fetched.mbox"
    rc.write_text(f'poll 127.0.0.1 service {proxy.port} protocol {"pop3" if protocol == "pop3" else "imap"} '
                  f'auth password user "alice" password "pw" sslproto "" keep fetchall '
                  f'mda "/bin/sh -c \'cat >> {out}\'"\n')
    rc.chmod(0o600)
    res = subprocess.run(["fetchmail", "--nosyslog", "-d0", "-f", str(rc), "-v"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)})
    assert res.returncode == 0, res.stdout + res.stderr
    wait_closed(mem, 1)
    assert b"Hello Alice." in out.read_bytes()
    cmds = _commands(mem.events)
    if protocol == "pop3":
        assert "USER" in cmds and "RETR" in cmds and cmds[-1] == "QUIT"
        assert any(e.kind is Kind.DATA and b"Hello Alice." in e.raw for e in mem.events)
    else:
        assert "LOGIN" in cmds and "FETCH" in cmds and cmds[-1] == "LOGOUT"
        assert any(e.kind is Kind.LITERAL and b"Hello Alice." in e.raw for e in mem.events)
    assert all(b'"pw"' not in e.shown() and b" pw\r\n" not in e.shown() for e in mem.events)


def test_imap_starttls_intercepted(loop_thread, dovecot, tmp_path):
    from mailtrace.tls import client_context

    proxy, mem = loop_thread.run(start_proxy(dovecot["imap"], protocol="imap", intercept_tls=True, lab_dir=tmp_path))
    imap = imaplib.IMAP4("127.0.0.1", proxy.port, timeout=10)
    imap.starttls(ssl_context=client_context(tmp_path))
    imap.login("alice", "pw")
    imap.select("INBOX", readonly=True)
    imap.logout()
    wait_closed(mem, 1)
    tls = next(i for i, e in enumerate(mem.events) if e.kind is Kind.TLS)
    assert mem.events[tls].tls.intercepted is True
    assert _commands(mem.events[tls:])[-3:] == ["LOGIN", "EXAMINE", "LOGOUT"]
