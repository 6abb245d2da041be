"""``mailtrace sniff``: a live capture on lo while a real client talks to a real server, with
tcpdump or scapy's sniffer (``--engine``; scapy when tcpdump is not installed)."""

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
    assert events[0].peer.mode == "capture" and events[-1].kind is Kind.CLOSE
    assert "1 mail session, 0 gaps." in err  # one session, singular (it said "1 mail sessions")


def _start_sniff(tmp_path, name, port, *extra, env=None):
    """A ``mailtrace sniff`` writing its transcript to ``name``.jsonl; skips when it cannot capture."""
    log = tmp_path / f"{name}.jsonl"
    proc = subprocess.Popen([*MAILTRACE, "sniff", "--iface", "lo", "--port", str(port), "--protocol", "smtp",
                             "--quiet", "--log", str(log), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    banner = proc.stdout.readline()
    if "capturing on lo" not in banner:
        proc.wait(10)
        pytest.skip(f"cannot capture here: {proc.stderr.read().strip()}")
    return proc, log, banner


def _one_smtp_session(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("sniffed.test")
        s.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: sniff\r\n\r\nlive\r\n")


def _stop(proc, log):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and '"kind": "close"' not in log.read_text():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # like Ctrl+C
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return list(read_jsonl(log)), err


def _dialogue(events):
    return [(e.side, e.kind, e.raw) for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA)]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is not installed (the other engine to compare)")
def test_sniff_engines_tcpdump_and_scapy_see_the_same_session(tmp_path, loop_thread):
    _, handler, port = loop_thread.run(start_aiosmtpd())
    by_tcpdump, log_t, banner_t = _start_sniff(tmp_path, "tcpdump", port, "--engine", "tcpdump")
    by_scapy, log_s, banner_s = _start_sniff(tmp_path, "scapy", port, "--engine", "scapy")
    assert "with tcpdump" in banner_t and "with scapy" in banner_s
    _one_smtp_session(port)
    events_t, _ = _stop(by_tcpdump, log_t)
    events_s, err = _stop(by_scapy, log_s)
    assert [e.verb.upper() for e in events_s if e.kind is Kind.COMMAND] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert _dialogue(events_s) == _dialogue(events_t)
    assert events_s[0].peer.mode == "capture" and events_s[-1].kind is Kind.CLOSE
    assert [e.kind for e in events_s if e.kind is Kind.GAP] == []
    assert "1 mail session, 0 gaps." in err  # one session, singular (it said "1 mail sessions")


@pytest.mark.slow
def test_sniff_without_tcpdump_captures_with_scapy(tmp_path, loop_thread):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}  # a machine with no tcpdump (nor anything else) on PATH
    assert shutil.which("tcpdump", path=env["PATH"]) is None
    _, handler, port = loop_thread.run(start_aiosmtpd())
    proc, log, banner = _start_sniff(tmp_path, "auto", port, env=env)
    assert "with scapy" in banner
    _one_smtp_session(port)
    events, err = _stop(proc, log)
    assert [e.verb.upper() for e in events if e.kind is Kind.COMMAND] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert b"Subject: sniff\r\n" in b"".join(e.raw for e in events if e.kind is Kind.DATA)
    assert "1 mail session, 0 gaps." in err  # one session, singular (it said "1 mail sessions")


@pytest.mark.parametrize("engine", ["tcpdump", "scapy"])
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root (to become an unprivileged user) and setpriv")
def test_sniff_without_privilege_says_how_to_get_it(engine):
    if engine == "tcpdump" and not shutil.which("tcpdump"):
        pytest.skip("tcpdump is not installed")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          *MAILTRACE, "sniff", "--iface", "lo", "--duration", "1", "--engine", engine],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": "/tmp"})
    if "No module named" in res.stderr or "Permission denied: '/" in res.stderr:
        pytest.skip("the unprivileged user cannot run this checkout")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "sudo" in res.stderr and "setcap" in res.stderr
