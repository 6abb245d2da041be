"""A broken server for the grader's tests: it ignores --port and listens on another one."""
import socket
import time

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))  # not the --port it was given
s.listen()
while True:
    time.sleep(1)
