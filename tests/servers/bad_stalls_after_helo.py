"""A broken server for the grader's tests: it greets and answers HELO/EHLO, then reads every
line and never answers again (a student's deadlock)."""
import socket
import sys
import threading

port = int(sys.argv[sys.argv.index("--port") + 1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)


def serve(conn):
    conn.sendall(b"220 stuck.example ESMTP\r\n")
    for line in conn.makefile("rb"):
        if line[:4].upper() in (b"HELO", b"EHLO"):
            conn.sendall(b"250 stuck.example\r\n")


while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
