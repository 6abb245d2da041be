"""`mailtrace proxy` stops on SIGINT and on SIGTERM like `mailtrace lab`, also when its parent
started it with SIGINT ignored (a background job of sh: `mailtrace proxy ... &`, or a Python parent
that ignores SIGINT), which Python would otherwise leave ignored: the proxy could not be stopped
with Ctrl+C / kill -INT.  Real processes, real signals, a real TCP session through the proxy."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading

import pytest

from mailtrace_cli import MAILTRACE
from test_proxy_support import greeting_server


def _ignore_sigint() -> None:  # runs in the child before exec: the disposition is inherited, as from sh
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint_ignored", [True, False], ids=["sigint-ignored-by-parent", "default"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_proxy_stops_cleanly_on_either_signal(tmp_path, sig, sigint_ignored):
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    stop = threading.Event()
    thread = threading.Thread(target=greeting_server, args=(upstream, stop), daemon=True)
    thread.start()
    log = tmp_path / "p.jsonl"
    proc = subprocess.Popen(
        [*MAILTRACE, "proxy", "--listen", "127.0.0.1:0", "--protocol", "smtp",
         "--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--quiet", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None)
    try:
        banner = proc.stdout.readline()  # "mailtrace proxy listening on 127.0.0.1:PORT -> ..."
        port = int(banner.split(" -> ")[0].rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert client.recv(100) == b"220 test ready\r\n"  # a session is live in the relay
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=60)  # a bound against a hang, not a speed check
        except subprocess.TimeoutExpired:
            pytest.fail(f"the proxy did not stop on {sig.name}")
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        thread.join()
        upstream.close()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert '"reason": {"text": "proxy stopped"' in log.read_text()  # stopped cleanly: the session's end logged


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_lab_stops_the_same_way_with_sigint_ignored_by_its_parent(tmp_path, sig):
    """The behaviour the proxy mirrors: `mailtrace lab` already stops on both."""
    proc = subprocess.Popen(
        [*MAILTRACE, "lab", "--no-tls", "--smtp-port", "0", "--pop3-port", "0", "--imap-port", "0",
         "--dir", str(tmp_path / "lab")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigint)
    try:
        assert "SMTP on 127.0.0.1:" in proc.stdout.readline()
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the lab did not stop on {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "mailtrace: stopped." in out
