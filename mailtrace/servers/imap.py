"""The IMAP lab server: the sans-I/O core (``mailtrace.protocols.imap``) on the lab's store.

``mailtrace serve imap`` and ``mailtrace lab`` call :func:`make_core_factory` and run one
``ImapServerConnection`` per accepted connection (plain, port 1430, and implicit TLS, port
9930, in the lab).  The one thing wired here besides the store and TLS: when the store tells
a core that its selected mailbox changed (a delivery by SMTP, an EXPUNGE by another session),
the core asks for ``Connection.notify()``, which feeds ``core.notify()`` on the event loop, so
a client in IDLE gets its untagged EXISTS at once (RFC 2177 §3).
"""

from __future__ import annotations

import time

from mailtrace.netaddr import is_loopback_address
from mailtrace.protocols.imap import ImapConfig, ImapServerConnection
from mailtrace.servers.base import ConnectionContext, CoreFactory
from mailtrace.servers.lab import Lab


def make_core_factory(lab: Lab) -> CoreFactory:
    store = lab.open_store()
    # off loopback, LOGINDISABLED until TLS (RFC 3501 §6.2.3) unless --allow-plaintext-auth
    config = ImapConfig(hostname=lab.hostname, tls_available=lab.tls_context is not None,
                        tls_required_for_auth=not getattr(lab, "allow_plaintext_auth", True))

    def factory(ctx: ConnectionContext) -> ImapServerConnection:
        def on_change() -> None:
            conn = ctx.connection
            if conn is not None and not conn.closing:
                try:
                    conn.notify()
                except RuntimeError:  # the event loop is gone (server shutting down)
                    pass

        return ImapServerConnection(config, store, clock=time.time, tls=ctx.tls,
                                    secure_channel=ctx.tls or is_loopback_address(ctx.client), on_change=on_change)

    return factory
