#!/usr/bin/env python3
"""smtp-client exercise: send one message over SMTP with a plain TCP socket (no smtplib).

    python smtp_client.py --server HOST --port PORT --from SENDER --to RCPT [--to RCPT ...]
                          --subject SUBJECT --body-file PATH

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade smtp-client smtp_client.py
"""

import argparse
import socket
import sys

TIMEOUT = 10  # seconds: how long to wait for a reply before giving up (exit 1)


def read_reply(sock):
    """Return (code, lines) for one whole reply.

    TODO: a reply may come in several recv() pieces, and may have several lines
    ("250-..." lines, then a last "250 ..." line). Keep the bytes that arrive after the
    reply for the next call (a buffer).
    """
    raise NotImplementedError


def send_command(sock, line):
    """Send one command line, ended by CRLF, and return its reply."""
    sock.sendall(line.encode("ascii") + b"\r\n")
    return read_reply(sock)


def main():
    p = argparse.ArgumentParser(description="Send one message over SMTP.")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", dest="recipients", action="append", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--body-file", required=True)
    args = p.parse_args()

    try:
        sock = socket.create_connection((args.server, args.port), timeout=TIMEOUT)
    except OSError as exc:
        print(f"error: cannot connect: {exc}", file=sys.stderr)
        return 2

    # TODO: greeting (220), EHLO (HELO after 500/502), MAIL FROM:<...>, RCPT TO:<...> for each
    # recipient, DATA (354), the message (headers, blank line, dot-stuffed body, CRLF endings),
    # "." and its reply, QUIT; the exit status of the contract.
    return 1


if __name__ == "__main__":
    sys.exit(main())
