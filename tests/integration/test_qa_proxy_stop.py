"""QA regression (independent checker): Ctrl+C on a proxy with a live session stops it cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading

from test_proxy_support import greeting_server


def test_sigint_with_a_live_session_prints_no_traceback(tmp_path):
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    stop = threading.Event()
    thread = threading.Thread(target=greeting_server, args=(upstream, stop), daemon=True)
    thread.start()
    log = tmp_path / "p.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtrace", "proxy", "--listen", "127.0.0.1:0", "--protocol", "smtp",
         "--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--quiet", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()  # "mailtrace proxy listening on 127.0.0.1:PORT -> ..."
        port = int(banner.split(" -> ")[0].rsplit(":", 1)[1])
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert client.recv(100) == b"220 test ready\r\n"  # the session is live in the relay
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        stop.set()
        thread.join()
        upstream.close()
    assert "Traceback" not in err and "Exception in callback" not in err, err
    assert proc.returncode == 0
    assert '"reason": {"text": "proxy stopped"' in log.read_text()  # JSONL version 2: the reason typed
