# DEFECTIVE on purpose (mutation test): must lose points on imap.literals and nowhere else.
#!/usr/bin/env python3
"""Reference solution of the imap-client exercise: IMAP4rev1 over a plain TCP socket (no imaplib).

    python imap_client.py --server HOST --port PORT --user USER --password PASS --out DIR
                          [--mailbox NAME] [--unseen-only] [--mark-seen]

Exit status: 0 success, 1 login refused / mailbox missing / the server closed or went silent,
2 server unreachable or greeting BYE.
"""

import argparse
import os
import re
import socket
import sys

TIMEOUT = 10  # seconds: the contract's read timeout
LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class ServerGone(Exception):
    """The server closed the connection or stopped answering."""


class Refused(Exception):
    """A tagged NO or BAD."""


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""
        self.counter = 0

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise ServerGone("the server stopped answering (timed out)")
        except OSError as exc:
            raise ServerGone(f"connection error: {exc}")
        if not chunk:
            raise ServerGone("the server closed the connection")
        self.buffer += chunk

    def read_line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_bytes(self, n):
        if len(self.buffer) < n:
            self.buffer += self.sock.recv(n - len(self.buffer))  # recv(n) returns n octets...
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self):
        """One response: (text with literals replaced by {n}, [literal octets]) (RFC 3501 §4.3)."""
        text = self.read_line()
        literals = []
        while True:
            m = LITERAL.search(text)
            if not m:
                return text, literals
            literals.append(self.read_bytes(int(m.group(1))))
            text += b"\r\n" + self.read_line()

    def command(self, line):
        """Send a tagged command; return the untagged responses; raise Refused on NO/BAD."""
        self.counter += 1
        tag = f"A{self.counter:04d}"
        self.sock.sendall(f"{tag} {line}\r\n".encode("utf-8"))
        untagged = []
        while True:
            text, literals = self.read_response()
            if text.startswith(tag.encode() + b" "):
                status = text.split(b" ", 2)
                if status[1].upper() != b"OK":
                    raise Refused(text.decode("utf-8", "replace"))
                return untagged
            untagged.append((text, literals))


def quote(s):
    """An IMAP quoted string (RFC 3501 §4.3): backslash and double quote escaped."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        print(f"error: cannot connect to {args.server}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.settimeout(TIMEOUT)
    conn = Connection(sock)
    try:
        greeting, _ = conn.read_response()
        if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
            print(f"error: the server refused the session: {greeting.decode('utf-8', 'replace')}", file=sys.stderr)
            return 2
        try:
            conn.command(f"LOGIN {quote(args.user)} {quote(args.password)}")
            conn.command(f"{'SELECT' if args.mark_seen else 'EXAMINE'} {quote(args.mailbox)}")
        except Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            logout_quietly(conn)
            return 1
        found = conn.command("UID SEARCH UNSEEN" if args.unseen_only else "UID SEARCH ALL")
        uids = []
        for text, _ in found:
            if text.upper().startswith(b"* SEARCH"):
                uids += [int(x) for x in text.split()[2:]]
        os.makedirs(args.out, exist_ok=True)
        for uid in uids:
            for text, literals in conn.command(f"UID FETCH {uid} BODY.PEEK[]"):
                if b" FETCH " in text.upper() and literals:
                    with open(os.path.join(args.out, f"{uid}.eml"), "wb") as f:
                        f.write(literals[0])
            if args.mark_seen:
                conn.command(f"UID STORE {uid} +FLAGS (\\Seen)")
        logout_quietly(conn)
        return 0
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        logout_quietly(conn)
        return 1
    except ServerGone as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()


def logout_quietly(conn):
    try:
        conn.command("LOGOUT")
    except (ServerGone, Refused, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
