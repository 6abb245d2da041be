"""A STARTTLS session intercepted by the real proxy (``mailtrace proxy --intercept-tls``, our lab
as the server, real clients) round-trips through its capture: ``mailtrace show`` of the
``--pcap`` file gives the dialogue of the ``--log`` transcript, with no problem the session did
not have.  The export writes the decrypted rest as a second TCP conversation (``capture.export``);
read back as a new session, it used to show a client speaking before the greeting, EHLO
extensions as plain 250s, AUTH as "not valid base64" and every message line as a command.
"""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import sys

import pytest

from conftest import need

MESSAGE = b"Subject: via proxy\r\nFrom: alice@lab.test\r\nTo: bob@lab.test\r\n\r\nfirst line\r\nsecond line\r\n"
PROBLEM = re.compile(r"^\s+! ", re.M)  # how the text view marks a problem under an event


def _mailtrace(*args: str, timeout: float = 60) -> str:
    out = subprocess.run([sys.executable, "-m", "mailtrace", *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _smtplib_client(port: int, lab) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("student")
        s.starttls(context=lab.client_tls_context())  # trusts the lab CA: the proxy's certificate
        s.ehlo("student")
        s.login("alice", "alice")  # AUTH PLAIN (the lab offers PLAIN and LOGIN)
        s.sendmail("alice@lab.test", ["bob@lab.test"], MESSAGE)


def _swaks_client(port: int, lab) -> None:
    from mailtrace.tls import paths

    swaks = need("swaks")
    out = subprocess.run([swaks, "--server", f"127.0.0.1:{port}", "-tls", "--auth", "LOGIN", "--auth-user", "alice",
                          "--auth-password", "alice", "--from", "alice@lab.test", "--to", "bob@lab.test",
                          "--tls-verify", "--tls-ca-path", str(paths(lab.directory).ca_cert)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def _events(jsonl_text: str) -> list[dict]:
    return [e for e in map(json.loads, jsonl_text.splitlines()) if "session" in e]


def _dialogue(events: list[dict]) -> list[tuple]:
    """What was said, in order: side, kind, verb or code, and the line as shown without its
    decoded-credentials note (a pcap carries that note as a packet comment, not as bytes)."""
    out = []
    for e in events:
        if e["kind"] == "tls":
            out.append(("-", "tls", e["tls"]["how"], e["tls"]["intercepted"]))
        elif e["kind"] in ("command", "reply", "data"):
            raw = e["raw"].split("  [")[0] if e.get("redacted") else e["raw"]
            out.append((e["side"], e["kind"], e.get("verb", ""), e.get("code", ""), raw))
    return out


@pytest.mark.parametrize("client", [_smtplib_client, _swaks_client], ids=["smtplib", "swaks"])
def test_intercepted_starttls_capture_shows_the_same_dialogue(lab, tmp_path, client):
    log, pcap = tmp_path / "px.jsonl", tmp_path / "px.pcapng"
    proxy = subprocess.Popen([sys.executable, "-m", "mailtrace", "proxy", "--listen", "127.0.0.1:0",
                              "--to", f"127.0.0.1:{lab.port('smtp')}", "--protocol", "smtp", "--intercept-tls",
                              "--dir", str(lab.directory), "--log", str(log), "--pcap", str(pcap), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proxy.stdout.readline()
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", banner)
        assert port, banner + proxy.stderr.read()
        client(int(port.group(1)), lab)
        lab.wait_closed(1)
    finally:
        proxy.terminate()
        proxy.communicate(timeout=60)
    assert len(lab.store.mailbox("bob").messages()) == 1

    logged = _events(log.read_text())
    captured = _events(_mailtrace("show", str(pcap), "--format", "jsonl"))
    assert [e["session"] for e in captured if e["kind"] == "open"] == ["smtp-1"]  # one session, not two
    dialogue = _dialogue(logged)
    assert ("-", "tls", "starttls", True) in dialogue and any(d[2] == "AUTH" for d in dialogue)
    assert _dialogue(captured) == dialogue
    assert captured[-1]["kind"] == "close"

    assert PROBLEM.findall(_mailtrace("show", str(log))) == []  # the session itself was correct ...
    shown = _mailtrace("show", str(pcap))
    assert PROBLEM.findall(shown) == []  # ... and its capture says so
    assert "not valid base64" not in shown and "hidden in this file" in shown  # the redacted AUTH payload

    # the segment view lists the tunnel's segments under the same session's lines
    segments = _mailtrace("show", str(pcap), "--packets").split("TCP connection 2:")
    assert len(segments) == 2 and "MAIL FROM:<ALICE@LAB.TEST>" in segments[1].upper() and "STARTTLS" in segments[0].upper()
