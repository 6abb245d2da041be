# DEFECTIVE on purpose (mutation test): must lose points on smtp.whole-reply and nowhere else.
#!/usr/bin/env python3
"""Reference solution of the smtp-client exercise: SMTP over a plain TCP socket (no smtplib).

    python smtp_client.py --server HOST --port PORT --from SENDER --to RCPT [--to RCPT ...]
                          --subject SUBJECT --body-file PATH

Exit status: 0 accepted for every recipient, 3 accepted for some, 1 refused (or the server
closed / went silent), 2 server unreachable or greeting 4xx/5xx.
"""

import argparse
import base64
import socket
import sys
import time
import uuid
from email.header import Header
from email.utils import formatdate

TIMEOUT = 10  # seconds: the contract's read timeout


class ServerGone(Exception):
    """The server closed the connection or stopped answering."""


class Connection:
    """A socket plus a buffer: replies are read line by line, however TCP cut them."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def send_line(self, line):
        self.sock.sendall(line.encode("ascii") + b"\r\n")

    def read_line(self):
        while b"\r\n" not in self.buffer:
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise ServerGone("the server stopped answering (timed out)")
            except OSError as exc:
                raise ServerGone(f"connection error: {exc}")
            if not chunk:
                raise ServerGone("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read_reply(self):
        """A whole reply: (code, [lines]). Multi-line replies use "250-" until the last "250 "."""
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise ServerGone("the server stopped answering (timed out)")
        if not data:
            raise ServerGone("the server closed the connection")
        text = data.decode("utf-8", "replace")
        lines = text.split("\r\n")
        return int(text[:3]) if text[:3].isdigit() else 0, lines

    def command(self, line):
        self.send_line(line)
        return self.read_reply()


def encode_subject(subject):
    try:
        subject.encode("ascii")
        return subject
    except UnicodeEncodeError:
        return Header(subject, "utf-8").encode(linesep="\r\n")  # RFC 2047 encoded-words, folded with CRLF


def build_message(sender, recipients, subject, body):
    headers = [
        f"From: {sender}",
        f"To: {', '.join(recipients)}",
        f"Subject: {encode_subject(subject)}",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{sender.split('@')[-1] or 'localhost'}>",
    ]
    text_lines = body.replace("\r\n", "\n").split("\n")
    if text_lines and text_lines[-1] == "":
        text_lines.pop()
    try:
        body.encode("ascii")
        body_lines = text_lines
    except UnicodeEncodeError:
        headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                    "Content-Transfer-Encoding: base64"]
        data = "\r\n".join(text_lines).encode("utf-8") + b"\r\n"
        encoded = base64.b64encode(data).decode("ascii")
        body_lines = [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
    lines = headers + [""] + body_lines
    # RFC 5321 §4.5.2: a line starting with "." gets one more "." in front
    return "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in lines)


def main():
    p = argparse.ArgumentParser(description="Send one message over SMTP.")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", dest="recipients", action="append", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--body-file", required=True)
    args = p.parse_args()

    with open(args.body_file, encoding="utf-8") as f:
        body = f.read()

    try:
        sock = socket.create_connection((args.server, args.port), timeout=TIMEOUT)
    except OSError as exc:
        print(f"error: cannot connect to {args.server}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.settimeout(TIMEOUT)
    conn = Connection(sock)
    try:
        code, lines = conn.read_reply()
        if code != 220:
            print(f"error: the server refused the session: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 2
        code, lines = conn.command(f"EHLO {socket.gethostname() or 'localhost'}")
        if code in (500, 502):
            code, lines = conn.command(f"HELO {socket.gethostname() or 'localhost'}")
        if code != 250:
            print(f"error: HELO/EHLO refused: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 1
        code, lines = conn.command(f"MAIL FROM:<{args.sender}>")
        if code != 250:
            print(f"error: sender refused: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 1
        accepted, rejected = [], []
        for rcpt in args.recipients:
            code, lines = conn.command(f"RCPT TO:<{rcpt}>")
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                rejected.append(rcpt)
                print(f"error: recipient {rcpt} refused: {lines[-1]}", file=sys.stderr)
        if not accepted:
            quit_quietly(conn)
            return 1
        code, lines = conn.command("DATA")
        if code != 354:
            print(f"error: DATA refused: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 1
        conn.sock.sendall(build_message(args.sender, args.recipients, args.subject, body).encode("ascii")
                          + b".\r\n")
        code, lines = conn.read_reply()
        if code != 250:
            print(f"error: message refused: {lines[-1]}", file=sys.stderr)
            quit_quietly(conn)
            return 1
        quit_quietly(conn)
        return 3 if rejected else 0
    except ServerGone as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()


def quit_quietly(conn):
    try:
        conn.command("QUIT")
    except (ServerGone, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
