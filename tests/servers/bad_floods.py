"""A broken server for the grader's tests: it greets, then sends one reply that never ends
(continuation lines as fast as the client reads them)."""
import socket
import sys
import threading

port = int(sys.argv[sys.argv.index("--port") + 1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)


def serve(conn):
    conn.sendall(b"220 flood.example ESMTP\r\n")
    conn.recv(1024)
    line = b"250-" + b"A" * 200 + b"\r\n"
    try:
        while True:
            conn.sendall(line * 64)
    except OSError:
        pass


while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
