"""The SMTP lab server: the sans-I/O core (``mailtrace.protocols.smtp``) on the lab's store.

``mailtrace serve smtp`` and ``mailtrace lab`` call :func:`make_core_factory` and run one
``SmtpServerConnection`` per accepted connection (plain on 2525 with STARTTLS, and implicit
TLS on 4465 in the lab).  Everything SMTP decides is in the core; this module only wires in
the store, the TLS availability, the client's address (for the Received: header) and
whether the channel is safe for plaintext passwords (loopback or TLS).
"""

from __future__ import annotations

import itertools
import time

from mailtrace.netaddr import is_loopback_address

from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection
from mailtrace.servers.base import ConnectionContext, CoreFactory
from mailtrace.servers.lab import Lab


def make_config(lab: Lab, **overrides) -> SmtpConfig:
    """The SMTP configuration of ``lab`` (``lab.smtp_config`` overrides, for tests)."""
    base = dict(hostname=lab.hostname, local_domains=tuple(lab.local_domains),
                tls_available=lab.tls_context is not None,
                postmaster=next(iter(lab.users), ""),  # RFC 5321 §4.5.1: someone reads postmaster's mail
                tls_required_for_auth=not getattr(lab, "allow_plaintext_auth", True))
    base.update(getattr(lab, "smtp_config", None) or {})
    base.update(overrides)
    return SmtpConfig(**base)


def make_core_factory(lab: Lab, **config_overrides) -> CoreFactory:
    """A factory of SMTP cores on ``lab``'s store (``config_overrides``: SmtpConfig fields)."""
    store = lab.open_store()
    config = make_config(lab, **config_overrides)
    # one numbering for all the server's connections (a lab worker's: its own share of them)
    queue_ids = getattr(lab, "queue_ids", None) or itertools.count(1)

    def factory(ctx: ConnectionContext) -> SmtpServerConnection:
        return SmtpServerConnection(config, store, clock=time.time, queue_ids=queue_ids,
                                    client_address=ctx.client, tls=ctx.tls,
                                    secure_channel=ctx.tls or is_loopback_address(ctx.client))

    return factory
