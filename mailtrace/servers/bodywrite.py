"""Message bodies written to the socket with the interpreter lock released.

A lab runs in one Python process: its event loop, log writer and live view share one
interpreter lock, so the sessions it serves per second are bounded by the time that lock is
held per session.  uvloop's ``transport.write`` makes its ``write()`` system call while
holding the lock.  For a message body (a RETR, a FETCH) that call is most of a reply's time:
the kernel copies the body and runs loopback TCP up to waking the client, and on a busy
machine the woken client often takes the CPU before the call returns (measured with
``py-spy --gil``, tests/bench/profile_lab.py: 29% of the lock's time in POP3 sessions was
that one line).  ``os.write``/``os.writev`` release the lock around the call, so the log
writer and the live view run meanwhile: the lock's time per POP3 session (10 clients, 100 RETR
of 10 KB) 16-18 -> 12 ms on a loaded machine; IMAP (a few 256 KB writes a session) about even.

Only where it changes nothing else: a plain TCP transport of uvloop (not TLS: a TLS transport
must encrypt first; asyncio's own transport already sends with the lock released) with nothing
queued in it (so bytes keep their order), and replies of at least ``BODY_OCTETS`` (short
replies stay with the transport: taking the lock back after each would cost more than the
call).  What the kernel does not take at once goes to ``transport.write`` as usual, which
queues it and applies backpressure; an error (the client reset the connection) is left for
the transport to find and report as it always does.
"""

from __future__ import annotations

import os

try:
    from uvloop.loop import TCPTransport as _PLAIN_UVLOOP_TCP
except ImportError:  # asyncio's own loop: nothing to do
    _PLAIN_UVLOOP_TCP = None

BODY_OCTETS = 2048  # a reply this long carries a message (or part of one)
MAX_PIECES = 1024  # IOV_MAX on Linux: more pieces than this in one writev is an error


def write_body(transport, pieces: list[bytes], octets: int) -> bool:
    """Write ``pieces`` (``octets`` in all) on ``transport``'s socket with the interpreter lock
    released; False when this is not such a case (the caller writes them as usual)."""
    if (octets < BODY_OCTETS or len(pieces) > MAX_PIECES or type(transport) is not _PLAIN_UVLOOP_TCP
            or transport.get_write_buffer_size()):
        return False
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        sent = os.write(sock.fileno(), pieces[0]) if len(pieces) == 1 else os.writev(sock.fileno(), pieces)
    except (BlockingIOError, InterruptedError):  # the socket's buffer is full: all of it goes to the transport
        sent = 0
    except (OSError, ValueError):  # a reset, a closed socket: the transport finds it and tells the protocol
        return False
    if sent < octets:
        transport.writelines(_unsent(pieces, sent))
    return True


def _unsent(pieces: list[bytes], sent: int) -> list[bytes]:
    """What is left of ``pieces`` after their first ``sent`` octets (no copy of the whole: a
    FETCH of 256 KB joined was a fresh mmap and its page faults)."""
    for i, piece in enumerate(pieces):
        if sent < len(piece):
            return [piece[sent:], *pieces[i + 1:]]
        sent -= len(piece)
    return []
