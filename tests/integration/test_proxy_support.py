"""Helpers for the proxy tests: an event loop in a thread hosting real peers and the proxy.

Real clients (smtplib, swaks, curl...) run blocking in the test thread; aiosmtpd (a real SMTP
server written elsewhere) and the proxy run in the loop thread.  Every port is ephemeral.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mailtrace.proxy.relay import Proxy, ProxyConfig
from mailtrace.transcript.event import Kind
from mailtrace.transcript.recorder import MemorySink, Recorder


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Collector:
    """aiosmtpd handler keeping what it received (and allowing any AUTH)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 OK stored"


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


async def start_aiosmtpd(tls_context=None, require_starttls: bool = False, handler=None):
    from aiosmtpd.smtp import SMTP

    handler = handler or Collector()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="upstream.test", tls_context=tls_context, require_starttls=require_starttls,
                     authenticator=_authenticator, auth_require_tls=False),
        "127.0.0.1", 0)
    return server, handler, server.sockets[0].getsockname()[1]


async def start_proxy(upstream_port: int, sinks=(), **kw):
    mem = MemorySink()
    recorder = Recorder([mem, *sinks])
    proxy = Proxy(ProxyConfig(upstream_host="127.0.0.1", upstream_port=upstream_port, **kw), recorder)
    await proxy.start()
    return proxy, mem


def greeting_server(sock, stop: threading.Event) -> None:
    """A stand-in upstream server for proxy tests: greets every connection with a 220 until
    ``stop`` is set, then closes them."""
    sock.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except OSError:
            continue
        conn.sendall(b"220 test ready\r\n")
        conns.append(conn)
    for conn in conns:
        conn.close()


def wait_closed(mem: MemorySink, sessions: int, timeout: float = 10) -> None:
    """Wait until ``sessions`` sessions have their close event (the proxy runs in another thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for e in list(mem.events) if e.kind is Kind.CLOSE) >= sessions:
            return
        time.sleep(0.02)
    raise AssertionError(f"only {sum(1 for e in mem.events if e.kind is Kind.CLOSE)} of {sessions} sessions closed")


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.stop()


def test_loop_thread_runs_coroutines(loop_thread):
    async def answer():
        return 42

    assert loop_thread.run(answer()) == 42
