"""Host and address helpers shared by the CLI and the servers (no I/O).

Addresses are written as RFC 3986 §3.2.2 writes them in URIs: an IPv6 address in brackets
before ``:port``. The lab listens on loopback (127.0.0.0/8, ::1: RFC 1122 §3.2.1.3,
RFC 4291 §2.5.3); anything else is reachable from the network, so the CLI warns about it and
the SMTP server accepts plaintext AUTH only on loopback or TLS (RFC 4954 §4).
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=1024)  # asked for every connection (limits, plaintext auth): usually the same few
def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1); False for anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_address(address: str) -> bool:
    """The host of ``"host:port"`` (``127.0.0.1:51234``, ``[::1]:25`` or ``::1:25``) is loopback."""
    return is_loopback(address.rsplit(":", 1)[0])


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:2525``, or ``[::1]:2525`` for an IPv6 address (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
