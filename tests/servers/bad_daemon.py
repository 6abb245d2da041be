"""A broken server for the grader's tests: it forks into the background (double fork, setsid)
and the process the grader started exits at once; the daemon serves SMTP badly forever."""
import os
import socket
import sys

port = int(sys.argv[sys.argv.index("--port") + 1])
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
while True:
    conn, _ = s.accept()
    conn.sendall(b"220 lab.test daemon\r\n")
