"""Message bodies written with the interpreter lock released (servers/bodywrite.py), on uvloop.

Real sockets on 127.0.0.1: a uvloop server transport, a plain client socket; and a POP3 lab
listener on uvloop driven by poplib with messages larger than a socket's buffers, read slowly.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
import struct
import threading

import pytest

uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed: the lab writes through asyncio's transport")

from mailtrace.servers.base import Listener, ListenerConfig  # noqa: E402
from mailtrace.servers.bodywrite import BODY_OCTETS, write_body  # noqa: E402
from mailtrace.servers.lab import Lab  # noqa: E402
from mailtrace.servers.pop3 import make_core_factory  # noqa: E402
from mailtrace.transcript.event import Kind  # noqa: E402
from mailtrace.transcript.recorder import MemorySink, Recorder  # noqa: E402


class LoopThread:
    """A uvloop event loop in a thread of its own."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn, *args):
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(1 << 20, n - len(data)))
        assert chunk, f"connection closed after {len(data)} of {n} octets"
        data += chunk
    return bytes(data)


@pytest.fixture
def connected():
    """(loop thread, the server side's uvloop transport, the client's socket)."""
    lt = LoopThread()
    accepted: list = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.append(transport)

    server = lt.run(lt.loop.create_server(Keep, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    for _ in range(500):
        if accepted:
            break
        threading.Event().wait(0.01)
    assert accepted, "the server side never accepted"
    try:
        yield lt, accepted[0], client
    finally:
        client.close()
        lt.call(accepted[0].close)
        server.close()
        lt.stop()


def test_a_short_reply_is_left_to_the_transport(connected):
    lt, transport, client = connected
    assert lt.call(write_body, transport, [b"+OK\r\n"], 5) is False
    assert lt.call(write_body, transport, [b"x" * 100] * 3, 300) is False


def test_a_body_arrives_whole_and_in_order_even_beyond_the_socket_buffers(connected):
    lt, transport, client = connected
    first = bytes(range(256)) * (BODY_OCTETS // 256 + 1)
    assert lt.call(write_body, transport, [b"head ", first], 5 + len(first)) is True
    assert recv_exactly(client, 5 + len(first)) == b"head " + first

    # Far more than the kernel takes at once while nobody reads: the rest goes to the
    # transport's queue, and a later body must then wait behind it (False: written as usual).
    big = b"".join(struct.pack(">I", i) for i in range(2_000_000))  # 8 MB, every 4 octets distinct
    pieces = [big[:3_000_001], big[3_000_001:5_000_000], big[5_000_000:]]  # (the kernel stops inside one)
    assert lt.call(write_body, transport, pieces, len(big)) is True
    assert lt.call(transport.get_write_buffer_size) > 0
    tail = b"T" * BODY_OCTETS
    assert lt.call(write_body, transport, [tail], len(tail)) is False
    lt.call(transport.write, tail)
    assert recv_exactly(client, len(big) + len(tail)) == big + tail


def test_a_reset_connection_is_left_for_the_transport_to_report(connected):
    lt, transport, client = connected
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # an RST
    body = b"b" * (4 * BODY_OCTETS)
    for _ in range(200):  # the first write may still be taken; one after the RST is not
        if lt.call(write_body, transport, [body], len(body)) is False:
            break
        threading.Event().wait(0.01)
    else:
        pytest.fail("write_body kept writing to a reset connection")


def test_pop3_retr_of_messages_larger_than_the_socket_buffers_on_uvloop(tmp_path):
    """The lab's POP3 server on uvloop: two large messages and a small one, RETR'd by poplib
    after the client let the first reply pile up unread; each arrives intact, in order, and the
    transcript holds each body whole."""
    sink = MemorySink()
    lab = Lab(directory=tmp_path, users={"alice": "pw"}, recorder=Recorder([sink]))
    store = lab.open_store()
    bodies = [b"".join(b"line %07d of message %d\r\n" % (i, n) for i in range(120_000)) for n in (1, 2)]
    bodies.append(b"short one\r\n")
    for n, body in enumerate(bodies, 1):
        store.deliver("alice", b"Subject: m%d\r\n\r\n" % n + body)
    lt = LoopThread()
    listener = Listener(ListenerConfig("pop3"), make_core_factory(lab), lab.recorder)
    lt.run(listener.start())
    try:
        pop = poplib.POP3("127.0.0.1", listener.port, timeout=30)
        pop.user("alice")
        pop.pass_("pw")
        pop._putcmd("RETR 1")  # sent, then not read for a while: the server's socket fills up
        threading.Event().wait(0.3)
        first = pop._getlongresp()
        got = [first] + [pop.retr(n) for n in (2, 3)]
        for n, (status, lines, _), body in zip((1, 2, 3), got, bodies):
            assert status.startswith(b"+OK")
            assert b"\r\n".join(lines) + b"\r\n" == b"Subject: m%d\r\n\r\n" % n + body
        pop.quit()
    finally:
        lt.run(listener.stop())
        lt.stop()
        store.close()
    data = [e for e in sink.events if e.kind is Kind.DATA and e.verb == "RETR"]
    assert [e.raw for e in data] == [b"Subject: m%d\r\n\r\n" % n + body + b".\r\n" for n, body in enumerate(bodies, 1)]
