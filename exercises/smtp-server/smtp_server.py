#!/usr/bin/env python3
"""smtp-server exercise: receive mail over SMTP and deliver it into Maildirs.

    python smtp_server.py --port PORT --maildir DIR [--domain DOMAIN]

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade smtp-server smtp_server.py
"""

import argparse
import os
import signal
import socketserver
import sys
import threading


def deliver(mailbox, message):
    """Deliver ``message`` (bytes) into the Maildir ``mailbox`` (DIR/U).

    TODO: write it to mailbox/tmp/NAME (a unique NAME), flush and os.fsync() it, then
    os.rename() it to mailbox/new/NAME: the rename makes the delivery atomic.
    """
    raise NotImplementedError


class Session(socketserver.StreamRequestHandler):
    """One client connection (one thread each: a slow client never delays the others)."""

    def reply(self, text):
        self.wfile.write(text.encode("utf-8") + b"\r\n")

    def handle(self):
        domain = self.server.domain
        self.reply(f"220 {domain} ESMTP ready")
        while True:
            line = self.rfile.readline(513)  # TODO: a line over 512 octets gets 500
            if not line:
                return  # the client went away: nothing to deliver
            verb, _, argument = line.rstrip(b"\r\n").decode("utf-8", "replace").partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                self.reply(f"221 {domain} bye")
                return
            # TODO: HELO/EHLO, MAIL FROM:<...>, RCPT TO:<user@DOMAIN> (550 for others), DATA
            # (354, read up to a line ".", remove the dot-stuffing, deliver, then 250), RSET,
            # NOOP; 500 / 501 / 503 as the README says.
            self.reply("500 Command unrecognized")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--domain", default="lab.test")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Session)
    server.maildir, server.domain = args.maildir, args.domain
    # SIGTERM: stop serving (shutdown() must run in another thread than serve_forever())
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
