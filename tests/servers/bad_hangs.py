"""A broken server for the grader's tests: it accepts connections and never says anything, and
it ignores SIGTERM."""
import signal
import socket
import sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)
port = int(sys.argv[sys.argv.index("--port") + 1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
held = []
while True:
    conn, _ = s.accept()
    held.append(conn)
