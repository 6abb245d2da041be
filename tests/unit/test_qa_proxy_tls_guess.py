"""QA regression (independent checker): a proxy/capture session whose client opens with a TLS
handshake (implicit TLS on a port not known as such) is marked as TLS, not parsed as garbage."""

from __future__ import annotations

import ssl

from mailtrace.proxy.trace import Tracer, looks_like_tls
from mailtrace.transcript.event import Kind, Side
from mailtrace.transcript.recorder import MemorySink, Recorder


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl), as it would reach the proxy."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname="lab.test")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def trace(protocol: str, turns):
    mem = MemorySink()
    tracer = Tracer(Recorder([mem]).session(protocol, mode="proxy"), protocol)
    for side, data in turns:
        tracer.feed(side, data)
    tracer.finish(Side.CLIENT, "client closed")
    return mem.events, tracer


def test_client_hello_first_is_marked_as_tls_and_not_parsed():
    hello = client_hello()
    assert looks_like_tls(hello)
    events, tracer = trace("imap", [(Side.CLIENT, hello), (Side.SERVER, b"\x16\x03\x03\x00\x7a" + bytes(122))])
    kinds = [e.kind for e in events]
    assert Kind.TLS in kinds
    assert not any(e.kind in (Kind.COMMAND, Kind.REPLY, Kind.VIOLATION) or e.notes for e in events)
    assert tracer.unseen[Side.CLIENT] == len(hello)
    assert "unseen" in events[-1].reason.text


def test_plain_sessions_are_untouched():
    events, _ = trace("pop3", [(Side.SERVER, b"+OK ready\r\n"), (Side.CLIENT, b"\x16\x03\x01 odd but after the greeting\r\n")])
    assert Kind.TLS not in [e.kind for e in events]
    assert [e.kind for e in events if e.side is Side.CLIENT][0] is Kind.COMMAND
