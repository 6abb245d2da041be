"""mailtrace/tcp.py: TCP_QUICKACK is set on TCP sockets (Linux) and never fails elsewhere.
(The effect, no 40 ms stall for a command sent in two writes, is measured by
tests/bench/bench_imap_two_writes.py, not asserted here: no timed assertions.)"""

from __future__ import annotations

import socket

import pytest

from mailtrace.tcp import QuickAck


class _Writer:
    def __init__(self, sock) -> None:
        self.sock = sock

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux-only")
def test_quickack_is_set_again_after_each_read():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        with client, conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
            qa = QuickAck(_Writer(conn))
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)  # what the kernel does by itself
            client.sendall(b"a1 NOOP")
            assert conn.recv(100) == b"a1 NOOP"
            qa.rearm()
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1


def test_not_a_tcp_socket_or_closed_is_a_no_op():
    a, b = socket.socketpair()  # AF_UNIX
    with a, b:
        QuickAck(_Writer(a)).rearm()
    QuickAck(_Writer(None)).rearm()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        s = socket.create_connection(srv.getsockname())
        qa = QuickAck(_Writer(s))
        s.close()
        qa.rearm()  # closed: OSError swallowed
        qa.rearm()


def test_the_server_shell_answers_a_command_sent_in_two_writes(tmp_path):
    from test_imap_server import RunningServer

    srv = RunningServer(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            s.send(b"a1 NOOP")
            s.send(b"\r\n")
            assert f.readline() == b"a1 OK NOOP completed\r\n"
    finally:
        srv.stop()
