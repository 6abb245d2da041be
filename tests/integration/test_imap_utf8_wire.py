"""No raw UTF-8 outside literals for a client that did not ENABLE UTF8=ACCEPT.

RFC 3501 §4.3: "A quoted string is a sequence of zero or more 7-bit characters"; §4.3.1: 8-bit
characters MAY go in literals (as Dovecot sends ENVELOPE and BODYSTRUCTURE strings); §5.1.3:
mailbox names in modified UTF-7; §9: response text is 7-bit.  RFC 6855 §3: "The IMAP server
MUST NOT send UTF-8 in quoted-strings to the client unless the client has indicated support
for that syntax by using the "ENABLE UTF8=ACCEPT" command."  Driven with imaplib both ways.
"""

from __future__ import annotations

import pytest

from mailtrace.protocols.base import Send
from test_imap_helpers import Client, make_store
from test_imap_server import RunningServer

RAW_UTF8 = ("From: José Pérez <jose@lab.test>\r\nSubject: café crème\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhola\r\n"
            "--b\r\nContent-Type: application/pdf; name=\"façade.pdf\"\r\n"
            "Content-Disposition: attachment; filename=\"façade.pdf\"\r\n\r\nJVBERi0=\r\n--b--\r\n").encode()


def _lines_and_literals(data) -> tuple[list[bytes], list[bytes]]:
    """imaplib's response list: (line, literal) pairs and bare lines."""
    lines, literals = [], []
    for item in data:
        if isinstance(item, tuple):
            lines.append(item[0])
            literals.append(item[1])
        else:
            lines.append(item)
    return lines, literals


@pytest.fixture
def server(tmp_path):
    srv = RunningServer(tmp_path)
    srv.store.deliver("bob", RAW_UTF8)
    srv.store.create_mailbox("bob", "Entwürfe")  # named in UTF-8 by another program
    yield srv
    srv.stop()


@pytest.mark.parametrize("enable", [False, True])
def test_raw_utf8_headers_and_names_reach_imaplib_as_the_rfcs_allow(server, enable):
    m = server.client("bob")
    try:
        if enable:
            assert m.enable("UTF8=ACCEPT")[0] == "OK"
        m.select("INBOX")
        typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
        assert typ == "OK"
        lines, literals = _lines_and_literals(data)
        assert all(line.isascii() for line in lines)  # 8-bit only in literals (§4.3.1)
        # the header's own octets, not U+FFFD: the filename as the message has it
        assert literals.count("façade.pdf".encode()) == 2 and "café crème".encode() in literals
        typ, names = m.list()
        assert typ == "OK"
        if enable:  # RFC 6855 §3: UTF-8 in quoted strings, once asked for
            assert '(\\HasNoChildren) "." "Entwürfe"'.encode() in names
        else:  # RFC 3501 §5.1.3: modified UTF-7
            assert b'(\\HasNoChildren) "." Entw&APw-rfe' in names
            assert all(isinstance(n, bytes) and n.isascii() for n in names)
    finally:
        m.logout()


def test_a_response_text_quoting_utf8_input_stays_7bit(tmp_path):
    c = Client(make_store(tmp_path))
    c.login("bob", "bob")
    c.select()
    out = c.cmd("a1 FETCH é FLAGS".encode())
    assert out.startswith(b"a1 BAD") and out.isascii() and b"\\xe9" in out
