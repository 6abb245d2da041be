"""``mailtrace sniff``: a live capture on lo while a real client talks to a real server."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time

import pytest

from mailtrace.transcript.event import Kind
from mailtrace.transcript.jsonl import read_jsonl
from test_proxy_support import loop_thread, start_aiosmtpd  # noqa: F401

MAILTRACE = [sys.executable, "-m", "mailtrace"]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed")
def test_sniff_lo_annotates_a_real_session(tmp_path, loop_thread):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    log = tmp_path / "s.jsonl"
    proc = subprocess.Popen([*MAILTRACE, "sniff", "--iface", "lo", "--port", str(port), "--protocol", "smtp",
                             "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    banner = proc.stdout.readline()
    if "capturing on lo" not in banner:
        proc.wait(10)
        pytest.skip(f"cannot capture here: {proc.stderr.read().strip()}")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("sniffed.test")
        s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: sniff\r\n\r\nlive\r\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and '"kind": "close"' not in log.read_text():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # like Ctrl+C
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    events = list(read_jsonl(log))
    assert [e.verb.upper() for e in events if e.kind is Kind.COMMAND] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert events[0].info["mode"] == "capture" and events[-1].kind is Kind.CLOSE
    assert "1 mail sessions" in err


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("tcpdump"),
                    reason="needs root (to become an unprivileged user), setpriv and tcpdump")
def test_sniff_without_privilege_says_how_to_get_it():
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          *MAILTRACE, "sniff", "--iface", "lo", "--duration", "1"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/tmp"})
    if "No module named" in res.stderr or "Permission denied: '/" in res.stderr:
        pytest.skip("the unprivileged user cannot run this checkout")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "sudo" in res.stderr and "setcap" in res.stderr
