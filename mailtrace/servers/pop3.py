"""The POP3 lab server: the sans-I/O core (``mailtrace.protocols.pop3``) on the lab's store.

``mailtrace serve pop3`` and ``mailtrace lab`` call :func:`make_core_factory` and run one
``Pop3ServerConnection`` per accepted connection (plain, port 1100, and implicit TLS, port
9950, in the lab).  Everything POP3 decides is in the core; this module only wires in the
store, the TLS availability, and a fresh APOP timestamp per greeting (RFC 1939 §7: it "MUST
be different each time the POP3 server issues a banner greeting").
"""

from __future__ import annotations

import os
import threading
import time

from mailtrace.netaddr import is_loopback_address
from mailtrace.protocols.pop3 import Pop3Config, Pop3ServerConnection, make_timestamp
from mailtrace.protocols.pop3.spec import IDLE_TIMEOUT
from mailtrace.servers.base import ConnectionContext, CoreFactory
from mailtrace.servers.lab import Lab


class _Clock:
    """Strictly increasing nanosecond stamps, so two greetings never share a timestamp."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


def make_core_factory(lab: Lab, *, idle_timeout: float | None = None) -> CoreFactory:
    """A factory of POP3 cores on ``lab``'s store.

    ``idle_timeout`` is the autologout (RFC 1939 §3: at least 10 minutes; default 600 s);
    ``lab.pop3_idle_timeout`` is used when the lab sets one.
    """
    store = lab.open_store()
    if idle_timeout is None:
        idle_timeout = getattr(lab, "pop3_idle_timeout", IDLE_TIMEOUT)
    config = Pop3Config(hostname=lab.hostname, idle_timeout=idle_timeout,
                        tls_available=lab.tls_context is not None,
                        tls_required_for_auth=not getattr(lab, "allow_plaintext_auth", True))
    clock = _Clock()
    pid = os.getpid()

    def factory(ctx: ConnectionContext) -> Pop3ServerConnection:
        return Pop3ServerConnection(store, make_timestamp(pid, clock(), lab.hostname), config, tls=ctx.tls,
                                    secure_channel=ctx.tls or is_loopback_address(ctx.client))

    return factory
