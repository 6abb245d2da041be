"""Connection limits: in total, and per client address (count and rate).

A lab server for a whole class must not be taken down by one student's script: every
connection costs a file descriptor and some memory, so the lab takes at most
``max_connections`` at once (all protocols together), at most ``max_per_address`` from one
client address, and new connections from one address at most at ``rate_per_address`` per
second (a token bucket of ``burst_per_address``).  A connection over a limit is not dropped
silently: the protocol core answers it with its own "busy" greeting (SMTP 421, POP3
``-ERR [SYS/TEMP]``, IMAP ``* BYE [UNAVAILABLE]``) and the shell closes it.

Per-address limits apply to loopback too only when ``exempt_loopback`` is False: on one
machine every client (the teacher's terminal, the test suite) shares 127.0.0.1.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Callable

from mailtrace.netaddr import is_loopback

FDS_KEPT_FREE = 64  # descriptors left for the store, logs and TLS files


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000  # all protocols together
    max_per_address: int = 64  # open connections from one client address
    rate_per_address: float = 10.0  # new connections per second from one address (sustained)
    burst_per_address: int = 50  # ... and in a burst
    exempt_loopback: bool = True


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as servers do); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


class ConnectionLimiter:
    """Counts open connections; ``admit(address)`` says why one is refused (or None)."""

    def __init__(self, limits: Limits = Limits(), clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.total = 0
        self.per_address: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address`` (an IP address) and return None, or return
        the reason it is refused (and count nothing)."""
        limits = self.limits
        if self.total >= limits.max_connections:
            return "too many connections"
        limited = not (limits.exempt_loopback and is_loopback(address))
        if limited:
            if self.per_address.get(address, 0) >= limits.max_per_address:
                return "too many connections from your address"
            if not self._take_token(address):
                return "too many new connections from your address"
        self.total += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.per_address.get(address, 0) - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)

    def _take_token(self, address: str) -> bool:
        limits, now = self.limits, self.clock()
        tokens, when = self._buckets.get(address, (float(limits.burst_per_address), now))
        tokens = min(float(limits.burst_per_address), tokens + (now - when) * limits.rate_per_address)
        if tokens < 1:
            self._buckets[address] = (tokens, now)
            return False
        self._buckets[address] = (tokens - 1, now)
        if len(self._buckets) > 4096:  # forget full buckets (bounded memory under address scans)
            full = [a for a, (t, w) in self._buckets.items()
                    if t + (now - w) * limits.rate_per_address >= limits.burst_per_address]
            for a in full:
                del self._buckets[a]
        return True
