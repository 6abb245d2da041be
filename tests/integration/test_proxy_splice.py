"""The relay without --intercept-tls (``ProxySession._splice``): bytes are written to the other
side from the read callback, so flow control, half-closes and the bytes the server sent before
the relay took over are the relay's own business.  Real sockets both sides."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading

from test_proxy_support import loop_thread, start_proxy, wait_closed  # noqa: F401

BIG = 8 * 1024 * 1024  # beyond the kernel's socket buffers (4 MB at most): the relay must pause reading, then resume


async def _bulk_server(digests: dict):
    """Greets, then sends BIG random octets while it reads what the client sends (until EOF);
    records the SHA-256 of both directions, and closes after the client's EOF."""

    async def handle(reader, writer):
        out = os.urandom(BIG)
        digests["server sent"] = hashlib.sha256(b"220 bulk\r\n" + out).hexdigest()
        writer.write(b"220 bulk\r\n")

        async def send():
            for i in range(0, BIG, 1 << 16):
                writer.write(out[i:i + (1 << 16)])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        got = hashlib.sha256()
        while data := await reader.read(1 << 16):
            got.update(data)
        digests["server got"] = got.hexdigest()
        await sender
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_megabytes_both_ways_at_once_arrive_whole_and_in_order(loop_thread):
    digests: dict = {}
    _, port = loop_thread.run(_bulk_server(digests))
    proxy, mem = loop_thread.run(start_proxy(port, protocol="smtp"))
    sent = os.urandom(BIG // 8)
    received = hashlib.sha256()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # a client that reads slowly, soon full
        s.settimeout(30)
        s.connect(("127.0.0.1", proxy.port))
        # The whole upload first, reading nothing meanwhile: the server's octets pile up in the
        # proxy (which may stop reading them, and must start again once this client reads).
        s.sendall(sent)
        s.shutdown(socket.SHUT_WR)  # a half-close: the server's octets must still come through
        total = 0
        while chunk := s.recv(1 << 16):
            received.update(chunk)
            total += len(chunk)
    wait_closed(mem, 1, 30)
    assert total == BIG + len(b"220 bulk\r\n")
    assert received.hexdigest() == digests["server sent"]
    assert digests["server got"] == hashlib.sha256(sent).hexdigest()


def test_a_greeting_sent_before_the_relay_starts_is_not_lost(loop_thread):
    """The server speaks first, at once: its greeting may sit in the stream's buffer when the
    relay takes the transports over."""
    import test_proxy_support as support

    stop = threading.Event()
    sock = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=support.greeting_server, args=(sock, stop), daemon=True).start()
    try:
        proxy, mem = loop_thread.run(start_proxy(sock.getsockname()[1], protocol="smtp"))
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as c:
                assert c.makefile("rb").readline() == b"220 test ready\r\n"
    finally:
        stop.set()
        sock.close()
