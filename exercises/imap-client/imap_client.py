#!/usr/bin/env python3
"""imap-client exercise: download an IMAP mailbox with a plain TCP socket (no imaplib).

    python imap_client.py --server HOST --port PORT --user USER --password PASS --out DIR
                          [--mailbox NAME] [--unseen-only] [--mark-seen]

Read README.md (README.es.md en español) for the whole contract, then fill in the TODOs.
Check your work with:  mailtrace grade imap-client imap_client.py
"""

import argparse
import os
import socket
import sys

TIMEOUT = 10  # seconds


def quote(s):
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command(sock, tag, line):
    """Send 'TAG line' and read untagged responses until the tagged one.

    TODO: a line ending in {n} announces a literal: read exactly n octets (by count), then the
    rest of the response line.
    """
    raise NotImplementedError


def main():
    p = argparse.ArgumentParser(description="Download messages from an IMAP mailbox.")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--unseen-only", action="store_true")
    p.add_argument("--mark-seen", action="store_true")
    args = p.parse_args()

    try:
        sock = socket.create_connection((args.server, args.port), timeout=TIMEOUT)
    except OSError as exc:
        print(f"error: cannot connect: {exc}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    # TODO: greeting, LOGIN, SELECT/EXAMINE, UID SEARCH, UID FETCH <uid> BODY.PEEK[] per UID,
    # write DIR/<uid>.eml, UID STORE with --mark-seen, LOGOUT; the contract's exit status.
    return 1


if __name__ == "__main__":
    sys.exit(main())
