"""TCP socket options shared by every connection shell (the lab servers and both proxy legs).

Delayed ACKs and Nagle's algorithm.  A client that sends a command in two writes (the line,
then its CRLF; or a literal's announcement, then its octets) with Nagle on cannot send the
second write until the first is acknowledged (RFC 896; RFC 1122 §4.2.3.4).  A receiver that
has nothing to answer yet delays that ACK (RFC 1122 §4.2.3.2: "an ACK should not be
excessively delayed; in particular, the delay MUST be less than 0.5 seconds"; Linux waits
about 40 ms).  So each such command costs 40 ms.  Linux's ``TCP_QUICKACK`` makes the kernel
acknowledge at once; the kernel clears it again by itself, so it is set again after every
read, as Dovecot does (the lab servers skip it after a read they answered at once: the reply
carries the ACK, and the option would cost a system call and an ACK packet of its own).
Elsewhere (no ``TCP_QUICKACK``) nothing is done.

A relay (the proxy) cannot know whether a reply will come, so ``RelayQuickAck`` guesses from
the bytes: a chunk that stops inside a line (``a1 NOOP`` before its CRLF) means its sender may
be waiting for our ACK to send the rest, so the option is set at once.  A chunk of whole lines
from the client is usually a command, and the server's answer, relayed back, carries the ACK;
if none went back within ``RELAY_ACK_DELAY`` (an IMAP literal announced with ``{n+}``, a BDAT
header, a DATA body written line by line), the pending ACK is sent then (``flush``), so such a
client waits that long at most, not the 40 ms of the delayed-ACK timer.  A server writes each
reply whole and waits for the next command, not for an ACK: its whole lines are left to the
kernel's delayed ACK.  Setting the option before every read instead cost the proxy a system
call and an ACK packet of its own per chunk, and its timer a wake-up per reply (measured with
tests/bench/bench_lab.py --only proxy: most of what the proxy added over a plain relay).
"""

from __future__ import annotations

import socket

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class QuickAck:
    """``QuickAck(writer).rearm()`` after each read of an asyncio stream (a no-op where the
    option does not exist or the transport is not a TCP socket)."""

    __slots__ = ("_sock",)

    def __init__(self, writer) -> None:
        sock = writer.get_extra_info("socket") if _QUICKACK is not None else None
        self._sock = sock if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) else None
        self.rearm()

    def rearm(self) -> None:
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except (OSError, ValueError):  # closed meanwhile (fd -1), or no such option: never fatal
                self._sock = None


RELAY_ACK_DELAY = 0.001  # seconds a relay leaves a read of whole lines unacknowledged, waiting for an answer


class RelayQuickAck(QuickAck):
    """One leg of a relay: ``read(data)`` after each read on it, ``answered()`` after each write
    to it (the written bytes carry the ACK of what was read).  ``client``: the leg to the client,
    the side that sends commands and may go on sending without an answer (a literal announced
    with ``{n+}``, a BDAT chunk, a DATA body); a server writes each reply whole."""

    __slots__ = ("_loop", "_timer", "_client")

    def __init__(self, writer, loop, client: bool) -> None:
        super().__init__(writer)
        self._loop = loop
        self._timer = None
        self._client = client

    def read(self, data: bytes) -> None:
        if self._sock is None:
            return
        if data[-1:] != b"\n":  # the sender stopped inside a line: it may be waiting for our ACK
            self.rearm()
        elif self._client and self._timer is None:
            self._timer = self._loop.call_later(RELAY_ACK_DELAY, self._unanswered)

    def answered(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _unanswered(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Send the pending ACK now, and stay in delayed-ACK mode.  An even value does that on
        Linux (``__tcp_sock_set_quickack``: the ACK goes out, then "pingpong" mode is entered
        again because ``val & 1`` is 0); 1 would also make the kernel acknowledge the next
        segments on arrival, each in an ACK packet of its own."""
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 2)
            except (OSError, ValueError):
                self._sock = None

    def close(self) -> None:
        self.answered()
        self._sock = None
