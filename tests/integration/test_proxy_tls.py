"""STARTTLS through the proxy: relayed untouched by default, intercepted on request (lab CA),
implicit TLS, and plaintext injected after STARTTLS flagged (CVE-2011-0411)."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import socket
import subprocess

import pytest

from mailtrace.transcript.event import Kind
from test_proxy_support import loop_thread, start_aiosmtpd, start_proxy, wait_closed  # noqa: F401


@pytest.fixture
def lab(tmp_path):
    from mailtrace.tls import ensure_lab_tls

    ensure_lab_tls(tmp_path)
    return tmp_path


def _client_ctx(lab):
    from mailtrace.tls import client_context

    return client_context(lab)


def _after_tls(events):
    i = next(i for i, e in enumerate(events) if e.kind is Kind.TLS)
    return events[i], [e for e in events[i + 1:] if e.kind is Kind.COMMAND]


def test_starttls_relayed_untouched_marks_encrypted(loop_thread, lab):
    from mailtrace.tls import server_context

    _, handler, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab), require_starttls=True))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("c")
        s.starttls(context=_client_ctx(lab))  # the client sees the real server's certificate
        s.ehlo("c")
        s.sendmail("a@lab.test", ["b@lab.test"], b"Subject: x\r\n\r\nsecret body\r\n")
    wait_closed(mem, 1)
    assert len(handler.messages) == 1
    tls, after = _after_tls(mem.events)
    assert tls.tls.intercepted is False and after == []
    assert not any(b"secret body" in e.raw for e in mem.events)
    close = mem.events[-1]
    assert close.kind is Kind.CLOSE and "TLS relayed unseen" in close.reason.text


def test_starttls_intercepted_keeps_dialogue_visible(loop_thread, lab):
    from mailtrace.tls import server_context

    _, handler, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab), require_starttls=True))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab, intercept_tls=True))
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("c")
        s.starttls(context=_client_ctx(lab))  # trusts the lab CA: fooled by the proxy's certificate
        s.ehlo("c2")
        s.sendmail("a@lab.test", ["b@lab.test"], b"Subject: x\r\n\r\nsecret body\r\n")
    wait_closed(mem, 1)
    assert handler.messages == [b"Subject: x\r\n\r\nsecret body\r\n"]
    tls, after = _after_tls(mem.events)
    assert tls.tls.intercepted is True and "intercepted" in tls.text()
    assert [e.verb.upper() for e in after][:3] == ["EHLO", "MAIL", "RCPT"]
    assert any(b"secret body" in e.raw for e in mem.events if e.kind is Kind.DATA)


@pytest.mark.skipif(not shutil.which("swaks"), reason="swaks is not installed")
def test_swaks_tls_intercepted(loop_thread, lab):
    from mailtrace.tls import server_context

    _, handler, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab)))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab, intercept_tls=True))
    out = subprocess.run(["swaks", "--server", f"127.0.0.1:{proxy.port}", "--tls", "--to", "bob@lab.test",
                          "--from", "alice@lab.test"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_closed(mem, 1)
    _, after = _after_tls(mem.events)
    assert [e.verb.upper() for e in after] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert len(handler.messages) == 1


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_curl_ssl_reqd_intercepted(loop_thread, lab, tmp_path):
    from mailtrace.tls import paths, server_context

    _, handler, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab)))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab, intercept_tls=True))
    msg = tmp_path / "m.eml"
    msg.write_bytes(b"Subject: curl\r\n\r\nvia curl\r\n")
    out = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(paths(lab).ca_cert),
                          f"smtp://127.0.0.1:{proxy.port}", "--mail-from", "alice@lab.test",
                          "--mail-rcpt", "bob@lab.test", "-T", str(msg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    wait_closed(mem, 1)
    _, after = _after_tls(mem.events)
    assert [e.verb.upper() for e in after][:4] == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert handler.messages and b"via curl" in handler.messages[0]


def test_plaintext_after_starttls_flagged(loop_thread, lab):
    from mailtrace.tls import server_context

    _, _, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab)))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO x\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"STARTTLS\r\nRSET\r\n")  # the injected RSET rides in the same packet
        assert f.readline().startswith(b"220")
        f.close()
    wait_closed(mem, 1)
    flagged = [e for e in mem.events if any(n.rule == "starttls-injection" for n in e.notes)]
    assert [e.verb.upper() for e in flagged] == ["RSET"]


def test_implicit_tls_upstream_intercepted(loop_thread, lab):
    from aiosmtpd.smtp import SMTP

    from mailtrace.tls import server_context
    from test_proxy_support import Collector

    handler = Collector()

    async def smtps():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: SMTP(handler, hostname="upstream.test"), "127.0.0.1", 0,
                                       ssl=server_context(lab))
        return srv.sockets[0].getsockname()[1]

    port = loop_thread.run(smtps())
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab, intercept_tls=True, upstream_tls=True))
    with smtplib.SMTP_SSL("127.0.0.1", proxy.port, timeout=10, context=_client_ctx(lab)) as s:
        s.ehlo("c")
        s.sendmail("a@lab.test", ["b@lab.test"], b"Subject: x\r\n\r\nimplicit\r\n")
    wait_closed(mem, 1)
    assert len(handler.messages) == 1
    tls = [e for e in mem.events if e.kind is Kind.TLS]
    assert tls and (tls[0].tls.how, tls[0].tls.intercepted) == ("implicit", True)
    assert any(e.verb.upper() == "MAIL" for e in mem.events if e.kind is Kind.COMMAND)


def test_injection_flagged_when_intercepting_and_failed_handshake_explained(loop_thread, lab):
    from mailtrace.tls import server_context

    _, _, port = loop_thread.run(start_aiosmtpd(tls_context=server_context(lab)))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp", lab_dir=lab, intercept_tls=True))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO x\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"STARTTLS\r\nRSET\r\n")
        assert f.readline().startswith(b"220")
        f.close()  # and no TLS handshake: the client just leaves
    wait_closed(mem, 1, timeout=20)
    flagged = [e for e in mem.events if any(n.rule == "starttls-injection" for n in e.notes)]
    assert [e.verb.upper() for e in flagged] == ["RSET"]
    assert "TLS handshake with the client failed" in mem.events[-1].reason.text


def test_cli_intercepting_proxy_never_loses_the_client_hello(tmp_path):
    """`mailtrace proxy --intercept-tls` as users run it (uvloop when installed): every STARTTLS
    session succeeds.  The client's ClientHello used to land in the plaintext buffer when it
    arrived before the swap, and was dropped as injected plaintext (about 1 session in 10)."""
    import os
    import re
    import ssl
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    mailtrace = [sys.executable, "-m", "mailtrace"]

    def started(argv: list[str]) -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen(mailtrace + argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, text=True)
        for _ in range(50):  # the banner's first lines
            line = proc.stdout.readline()
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            if found:
                return proc, int(found.group(1))
        proc.kill()
        raise AssertionError("no port in the banner")

    lab, lab_port = started(["serve", "smtp", "--port", "0", "--dir", "lab", "--quiet"])
    try:
        proxy, proxy_port = started(["proxy", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{lab_port}",
                                     "--protocol", "smtp", "--intercept-tls", "--dir", "lab"])
        try:
            context = ssl.create_default_context(cafile=str(tmp_path / "lab" / "tls" / "ca.pem"))
            for number in range(30):
                with smtplib.SMTP("127.0.0.1", proxy_port, timeout=15) as client:
                    client.starttls(context=context)
                    client.login("alice", "alice")
                    client.sendmail("alice@lab.test", ["bob@lab.test"], f"Subject: {number}\r\n\r\nhi\r\n")
        finally:
            proxy.terminate()
            proxy.communicate(timeout=20)
    finally:
        lab.terminate()
        lab.communicate(timeout=20)
    assert len(list((tmp_path / "lab" / "mail" / "bob" / "new").iterdir())) == 30
