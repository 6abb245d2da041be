"""Which observer parses which protocol, and how the protocol is guessed.

The port numbers are the IANA assignments (RFC 6409 §3.1 submission 587, RFC 8314 §3.3 implicit
TLS 465/993/995) plus the lab's own defaults (``mailtrace.servers.lab.DEFAULT_PORTS``).  When the
port says nothing, the server's first words do: "220" (RFC 5321 §4.2), "+OK" (RFC 1939 §4),
"* OK" / "* PREAUTH" (RFC 3501 §7.1).
"""

from __future__ import annotations

import importlib

from mailtrace.proxy.fallback import LineObserver
from mailtrace.servers.lab import DEFAULT_PORTS  # protocol -> (plain, implicit TLS)

PORT_PROTOCOL = {
    25: "smtp", 465: "smtp", 587: "smtp",
    110: "pop3", 995: "pop3",
    143: "imap", 993: "imap",
} | {port: protocol for protocol, ports in DEFAULT_PORTS.items() for port in ports}
IMPLICIT_TLS_PORTS = frozenset({465, 993, 995} | {tls for _plain, tls in DEFAULT_PORTS.values()})
STANDARD_PORT = {"smtp": 25, "pop3": 110, "imap": 143}  # what Wireshark decodes without help
PROTOCOLS = ("smtp", "pop3", "imap")
UNKNOWN = "tcp"  # the protocol name of a session we cannot identify (annotated from common.toml)

# protocol -> (class, modules to look in) of the real observer, written in mailtrace.protocols
OBSERVERS = {
    "smtp": ("SmtpObserver", ("mailtrace.protocols.smtp", "mailtrace.protocols.smtp.observer")),
    "pop3": ("Pop3Observer", ("mailtrace.protocols.pop3", "mailtrace.protocols.pop3.observer")),
    "imap": ("ImapObserver", ("mailtrace.protocols.imap", "mailtrace.protocols.imap.observer")),
}


def protocol_by_port(port: int) -> str | None:
    return PORT_PROTOCOL.get(port)


def protocol_by_greeting(data: bytes) -> str | None:
    if data[:3].isdigit() and data[:3].startswith(b"2"):
        return "smtp"
    if data.startswith(b"+OK"):
        return "pop3"
    if data.startswith(b"* OK") or data.startswith(b"* PREAUTH") or data.startswith(b"* BYE"):
        return "imap"
    return None


_CLASSES: dict[str, object] = {}  # protocol -> its observer class (or None), found once per process


def observer_class(protocol: str):
    """The observer class for ``protocol``: the real one when it exists, else ``LineObserver``."""
    try:
        return _CLASSES[protocol]
    except KeyError:
        cls = _CLASSES[protocol] = _find_observer_class(protocol)
        return cls


def _find_observer_class(protocol: str):
    spec = OBSERVERS.get(protocol)
    if spec is None:
        return None
    name, modules = spec
    for module in modules:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except Exception:  # missing or broken: the line observer still shows the dialogue
            cls = None
        if cls is not None:
            return cls
    return None


def make_observer(protocol: str):
    cls = observer_class(protocol)
    if cls is None:
        return LineObserver(protocol)
    return cls()
