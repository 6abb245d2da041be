"""The proxy's port table knows the IANA ports and the lab's own (one table: servers.lab.DEFAULT_PORTS)."""

from mailtrace.proxy.registry import IMPLICIT_TLS_PORTS, protocol_by_greeting, protocol_by_port
from mailtrace.servers.lab import DEFAULT_PORTS


def test_lab_ports_are_recognised():
    for protocol, (plain, tls) in DEFAULT_PORTS.items():
        assert protocol_by_port(plain) == protocol
        assert protocol_by_port(tls) == protocol
        assert tls in IMPLICIT_TLS_PORTS and plain not in IMPLICIT_TLS_PORTS


def test_iana_ports():
    assert [protocol_by_port(p) for p in (25, 587, 465, 110, 995, 143, 993)] == \
        ["smtp", "smtp", "smtp", "pop3", "pop3", "imap", "imap"]
    assert {465, 993, 995} <= IMPLICIT_TLS_PORTS and not {25, 587, 110, 143} & IMPLICIT_TLS_PORTS
    assert protocol_by_port(8080) is None


def test_greetings():
    assert protocol_by_greeting(b"220 lab.test ESMTP\r\n") == "smtp"
    assert protocol_by_greeting(b"+OK POP3 ready\r\n") == "pop3"
    assert protocol_by_greeting(b"* OK [CAPABILITY IMAP4rev1] ready\r\n") == "imap"
    assert protocol_by_greeting(b"554 no service\r\n") is None
    assert protocol_by_greeting(b"SSH-2.0-OpenSSH\r\n") is None
