#!/usr/bin/env python3
"""pop3-client exercise: download a POP3 maildrop with a plain TCP socket (no poplib).

    python pop3_client.py --server HOST --port PORT --user USER --password PASS --out DIR [--delete]

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade pop3-client pop3_client.py
"""

import argparse
import os
import socket
import sys

TIMEOUT = 10  # seconds


def read_line(sock, buffer):
    """Return (line without CRLF, rest of the buffer). TODO: recv() until a CRLF has arrived."""
    raise NotImplementedError


def main():
    p = argparse.ArgumentParser(description="Download a POP3 maildrop.")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--delete", action="store_true")
    args = p.parse_args()

    try:
        sock = socket.create_connection((args.server, args.port), timeout=TIMEOUT)
    except OSError as exc:
        print(f"error: cannot connect: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    # TODO: greeting, USER/PASS, STAT, RETR each message (multi-line: until ".", un-stuff "..")
    # and write DIR/<n>.eml in binary mode; DELE with --delete; QUIT; the contract's exit status.
    return 1


if __name__ == "__main__":
    sys.exit(main())
