"""BINARY (RFC 3516): FETCH BINARY / BINARY.PEEK / BINARY.SIZE decode base64 and
quoted-printable parts, literal8 for octets a literal cannot carry, APPEND of a literal8."""

from __future__ import annotations

import base64

from mailtrace.protocols.imap import bodystructure
from test_imap_helpers import Client, make_store

QP_PART = b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo =\r\n=62\r\n"
MSG = (b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
       b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + QP_PART + b"\r\n"
       b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n  YWJj\r\n ZA1l Cg==\r\n\r\n"
       b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n\r\n--b--\r\n")


def _client(tmp_path, *messages):
    store = make_store(tmp_path)
    for msg in messages:
        store.deliver("alice", msg)
    c = Client(store)
    c.login()
    c.select()
    return c


def test_decode_qp_keeps_crlf_and_drops_trailing_space():
    assert bodystructure.decode_qp(QP_PART) == b"hello\r\nbar\r\nfoo\tbar\r\nfoo b\r\n"


def test_fetch_binary_decodes_and_sizes(tmp_path):
    c = _client(tmp_path, MSG)
    reply = c.cmd("f1 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert b"BINARY.SIZE[1] 28 BINARY[1] {28}\r\nhello\r\nbar\r\nfoo\tbar\r\nfoo b\r\n)" in reply
    reply = c.cmd("f2 FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")  # "abcd\re\n": bare CR and LF
    assert b"BINARY[2] ~{7}\r\nabcd\re\n BINARY.SIZE[2] 7)" in reply
    assert b"BINARY[2]<1> ~{3}\r\nbcd\r e" not in reply
    assert b"BINARY[2]<1> {3}\r\nbcd)" in c.cmd("f3 FETCH 1 BINARY.PEEK[2]<1.3>")
    assert b"f4 NO [UNKNOWN-CTE]" in c.cmd("f4 FETCH 1 BINARY.PEEK[3]")
    assert b"f5 BAD" in c.cmd("f5 FETCH 1 BINARY.PEEK[1.MIME]")  # part numbers only
    assert b"\\Seen" in c.cmd("f6 FETCH 1 BINARY[1]")  # without .PEEK it sets \Seen (§4.2)


def test_append_literal8_with_nul_is_stored_base64_and_decoded_back(tmp_path):
    c = _client(tmp_path)
    payload = b"\x00\xe4\n\r\n\x00"
    msg = (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + payload)
    reply = c.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert b"a1 OK [APPENDUID" in reply
    c.cmd("n1 NOOP")
    body = c.cmd("f1 FETCH 1 BODY.PEEK[1]")
    assert base64.b64encode(payload) in body and b"\x00" not in body
    assert b"Content-Transfer-Encoding: base64" in c.cmd("f2 FETCH 1 BODY.PEEK[HEADER]")
    reply = c.cmd("f3 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert b"BINARY.SIZE[1] 6 BINARY[1] ~{6}\r\n" + payload + b")" in reply
