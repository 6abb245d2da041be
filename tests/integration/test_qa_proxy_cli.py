"""QA regressions (independent checker): the proxy on a busy port, and its annotator child."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import pytest

from mailtrace.proxy.annotator import Annotator
from mailtrace.transcript.event import Side
from mailtrace.transcript.jsonl import JsonlSink


def test_proxy_on_a_busy_port_is_a_clear_error_and_exits(tmp_path):
    """It used to print three chained tracebacks and then hang for 10 s waiting for its child."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    upstream = socket.socket()
    upstream.bind(("127.0.0.1", 0))
    upstream.listen()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mailtrace", "proxy", "--listen", f"127.0.0.1:{busy.getsockname()[1]}",
             "--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--quiet", "--log", str(tmp_path / "p.jsonl")],
            capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
        upstream.close()
    assert proc.returncode == 1
    assert "cannot listen on" in proc.stderr
    assert "Traceback" not in proc.stderr


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f][1:]


def test_annotated_session_opens_at_time_zero_before_the_greeting(tmp_path):
    """The relay times the greeting from the session's start; the child used to stamp the open
    event with its own later clock, so the live view and the HTML went back in time."""
    path = tmp_path / "a.jsonl"
    annotator = Annotator(lambda: [JsonlSink(path)])
    annotator.start()

    async def relay() -> None:
        await annotator.attach()
        tracer = annotator.open("smtp", "127.0.0.1:40000", "127.0.0.1:2525")
        tracer.feed(Side.SERVER, b"220 ready\r\n", 0.0)
        tracer.feed(Side.CLIENT, b"QUIT\r\n", 0.001)
        tracer.feed(Side.SERVER, b"221 bye\r\n", 0.002)
        tracer.finish(Side.SERVER, "server closed the connection", 0.003)
        await annotator.flush()

    asyncio.run(relay())
    annotator.close()
    events = _read(path)
    assert [e["kind"] for e in events][:2] == ["open", "reply"]
    assert events[0]["t"] == 0
    times = [e["t"] for e in events]
    assert times == sorted(times)


def test_annotator_closed_after_its_loop_still_lets_the_child_finish(tmp_path):
    path = tmp_path / "b.jsonl"
    annotator = Annotator(lambda: [JsonlSink(path)])
    annotator.start()

    async def relay() -> None:
        await annotator.attach()
        annotator.open("pop3", "127.0.0.1:40000", "127.0.0.1:110")
        await asyncio.sleep(0)  # the loop ends without flush(): an error path of the CLI

    asyncio.run(relay())
    annotator.close(timeout=30)  # used to raise RuntimeError("Event loop is closed")
    assert not annotator.process.is_alive()
    assert annotator.process.exitcode == 0


def test_ipv6_banner_names_addresses_as_the_options_take_them():
    try:
        upstream = socket.socket(socket.AF_INET6)
        upstream.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    upstream.listen()
    port = upstream.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "proxy", "--listen", "[::1]:0", "--protocol", "smtp",
                             "--to", f"[::1]:{port}", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
        upstream.close()
    assert banner.startswith("mailtrace proxy listening on [::1]:")
    assert f"-> [::1]:{port} [smtp]" in banner
