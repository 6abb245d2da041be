"""Stopping the lab (Ctrl-C) tells connected clients why: SMTP 421 (RFC 5321 §3.8)."""

import socket

from mailtrace.transcript.event import Kind


def _read_until(sock, marker: bytes) -> bytes:
    data = b""
    while marker not in data or not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_smtp_clients_get_421_and_partial_data_is_not_delivered(lab_factory):
    lab = lab_factory(("smtp",))
    idle = socket.create_connection(("127.0.0.1", lab.port()), timeout=10)
    mid = socket.create_connection(("127.0.0.1", lab.port()), timeout=10)
    for s in (idle, mid):
        assert _read_until(s, b"\r\n").startswith(b"220")
    mid.sendall(b"HELO x\r\nMAIL FROM:<a@lab.test>\r\nRCPT TO:<bob@lab.test>\r\nDATA\r\n")
    # the 354 may arrive together with the replies before it: read to its line end
    assert b"354" in _read_until(mid, b"354 ")
    mid.sendall(b"Subject: half\r\n\r\nonly half of the body")
    lab.wait_for(lambda evs: sum(e.kind is Kind.OPEN for e in evs) == 2)
    lab.stop()
    for s in (idle, mid):
        rest = _read_until(s, b"\r\n")
        assert rest.startswith(b"421 ") and b"closing transmission channel" in rest
        assert s.recv(100) == b""  # and the connection is closed
        s.close()
    assert list((lab.store.root / "bob" / "new").iterdir()) == []
    # the transcript says the message was cut short (however much of it had arrived)
    assert [e for e in lab.events if e.kind is Kind.DATA and "shut down" in e.incomplete]


def test_imap_clients_get_bye_even_in_idle(lab_factory):
    lab = lab_factory(("imap",))
    s = socket.create_connection(("127.0.0.1", lab.port("imap")), timeout=10)
    assert _read_until(s, b"* OK").startswith(b"* OK")
    s.sendall(b"a LOGIN alice alice\r\nb SELECT INBOX\r\nc IDLE\r\n")
    assert b"+ idling" in _read_until(s, b"+ idling")  # (not "+ " alone: the CAPABILITY code has "LITERAL+ ")
    lab.stop()
    rest = _read_until(s, b"* BYE")
    assert b"* BYE server shutting down\r\n" in rest
    assert s.recv(100) == b""
    s.close()
