"""mailtrace.netaddr: the one loopback check and host:port writer (CLI warnings, SMTP AUTH)."""

from mailtrace.netaddr import host_port, is_loopback, is_loopback_address


def test_loopback_hosts():
    for host in ("localhost", "127.0.0.1", "127.9.8.7", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "lab.test", "", "not an address"):
        assert not is_loopback(host), host


def test_loopback_client_addresses_as_the_servers_write_them():
    # servers/base.py writes f"{peer[0]}:{peer[1]}": IPv6 unbracketed; brackets accepted too
    assert is_loopback_address("127.0.0.1:51234")
    assert is_loopback_address("::1:51234")
    assert is_loopback_address("[::1]:51234")
    assert not is_loopback_address("192.0.2.7:51234")
    assert not is_loopback_address("2001:db8::7:51234")
    assert not is_loopback_address("garbage")


def test_host_port_brackets_ipv6():
    assert host_port("127.0.0.1", 2525) == "127.0.0.1:2525"
    assert host_port("::1", 25) == "[::1]:25"
