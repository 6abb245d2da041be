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
