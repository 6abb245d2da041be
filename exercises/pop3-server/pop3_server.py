#!/usr/bin/env python3
"""pop3-server exercise: let users download and delete the messages of their Maildir.

    python pop3_server.py --port PORT --maildir DIR --users FILE

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade pop3-server pop3_server.py
"""

import argparse
import os
import signal
import socketserver
import sys
import threading

locked = set()  # users with a session in TRANSACTION (RFC 1939 §4: lock the maildrop)
locked_guard = threading.Lock()


def load_maildrop(directory):
    """The messages of DIR/U/new and DIR/U/cur, sorted by file name: [(path, data), ...].

    TODO: data with CRLF line ends and a final CRLF (sizes count that form).
    """
    raise NotImplementedError


def byte_stuff(data):
    """TODO: a line starting with "." gets one more; end with ".\\r\\n" (RFC 1939 §3)."""
    raise NotImplementedError


class Session(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.encode("utf-8") + b"\r\n")

    def handle(self):
        self.send("+OK POP3 server ready")
        while True:
            line = self.rfile.readline(256)
            if not line:
                return  # dropped connection: delete nothing (RFC 1939 §6)
            words = line.decode("utf-8", "replace").split()
            verb = words[0].upper() if words else ""
            if verb == "QUIT":
                # TODO: in TRANSACTION, remove the messages marked deleted (UPDATE), unlock
                self.send("+OK bye")
                return
            # TODO: USER/PASS (check self.server.users, lock), STAT, LIST, RETR, DELE, NOOP,
            # RSET, TOP, UIDL; -ERR for a bad number, a deleted message, the wrong state.
            self.send("-ERR unknown command")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--users", required=True)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Session)
    server.maildir = args.maildir
    server.users = {}
    with open(args.users, encoding="utf-8") as f:
        for entry in f:
            name, _, password = entry.rstrip("\r\n").partition(":")
            server.users[name] = password
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
