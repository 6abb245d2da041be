# DEFECTIVE on purpose (mutation test): must lose points on pop3.quit+pop3.delete and nowhere else.
#!/usr/bin/env python3
"""Reference solution of the pop3-client exercise: POP3 over a plain TCP socket (no poplib).

    python pop3_client.py --server HOST --port PORT --user USER --password PASS --out DIR [--delete]

Exit status: 0 success, 1 login refused or the server closed / went silent, 2 server
unreachable or greeting -ERR.
"""

import argparse
import os
import socket
import sys

TIMEOUT = 10  # seconds: the contract's read timeout


class ServerGone(Exception):
    """The server closed the connection or stopped answering."""


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def read_line(self):
        """One line, CRLF removed, as bytes (TCP may cut a line anywhere: keep reading)."""
        while b"\r\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise ServerGone("the server stopped answering (timed out)")
            except OSError as exc:
                raise ServerGone(f"connection error: {exc}")
            if not chunk:
                raise ServerGone("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def command(self, line):
        """Send a command; return (ok, status line text)."""
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        status = self.read_line().decode("utf-8", "replace")
        return status.startswith("+OK"), status

    def read_multiline(self):
        """The body of a multi-line response: up to the line ".", byte-stuffing removed (RFC 1939 §3)."""
        lines = []
        while True:
            line = self.read_line()
            if line == b".":
                return b"".join(x + b"\r\n" for x in lines)
            lines.append(line[1:] if line.startswith(b".") else line)


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
        print(f"error: cannot connect to {args.server}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.settimeout(TIMEOUT)
    conn = Connection(sock)
    try:
        greeting = conn.read_line().decode("utf-8", "replace")
        if not greeting.startswith("+OK"):
            print(f"error: the server refused the session: {greeting}", file=sys.stderr)
            return 2
        for cmd in (f"USER {args.user}", f"PASS {args.password}"):
            ok, status = conn.command(cmd)
            if not ok:
                print(f"error: login refused: {status}", file=sys.stderr)
                quit_quietly(conn)
                return 1
        ok, status = conn.command("STAT")
        if not ok:
            print(f"error: STAT failed: {status}", file=sys.stderr)
            quit_quietly(conn)
            return 1
        count = int(status.split()[1])
        os.makedirs(args.out, exist_ok=True)
        for n in range(1, count + 1):
            ok, status = conn.command(f"RETR {n}")
            if not ok:
                print(f"error: RETR {n} failed: {status}", file=sys.stderr)
                continue
            data = conn.read_multiline()
            with open(os.path.join(args.out, f"{n}.eml"), "wb") as f:
                f.write(data)
            if args.delete:
                ok, status = conn.command(f"DELE {n}")
                if not ok:
                    print(f"error: DELE {n} failed: {status}", file=sys.stderr)
        return 0
    except ServerGone as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()


def quit_quietly(conn):
    try:
        pass
    except (ServerGone, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
