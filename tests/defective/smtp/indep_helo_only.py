# DEFECTIVE on purpose (mutation test): must lose points on smtp.helo-fallback and nowhere else.
# Written by the independent tester.
# Finding F12 of the independent grader review (commit messages cite it by that id).
#!/usr/bin/env python3
"""SMTP client, style A: socket.makefile + readline, RSET when no recipient, base64 body."""
import argparse
import base64
import socket
import sys
from email.header import Header
from email.utils import formatdate, make_msgid


class Closed(Exception):
    pass


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise Closed("server closed the connection")
        if not line.endswith(b"\n"):
            raise Closed("server closed the connection mid-line")
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            break
    code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else 0
    return code, lines


def cmd(sock, f, line):
    sock.sendall(line.encode("ascii") + b"\r\n")
    return read_reply(f)


def build_message(args):
    with open(args.body_file, "rb") as fh:
        body = fh.read().decode("utf-8")
    try:
        args.subject.encode("ascii")
        subject = args.subject
    except UnicodeEncodeError:
        subject = Header(args.subject, "utf-8").encode()
    headers = [
        "From: " + args.sender,
        "To: " + ", ".join(args.recipients),
        "Subject: " + subject,
        "Date: " + formatdate(localtime=True),
        "Message-ID: " + make_msgid(),
    ]
    try:
        body.encode("ascii")
        body_lines = body.splitlines()
    except UnicodeEncodeError:
        headers += [
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
        ]
        enc = base64.encodebytes(body.encode("utf-8")).decode("ascii")
        body_lines = enc.splitlines()
    out = []
    for l in headers + [""] + body_lines:
        if l.startswith("."):
            l = "." + l
        out.append(l + "\r\n")
    return "".join(out).encode("ascii")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", dest="recipients", action="append", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--body-file", required=True)
    args = p.parse_args()

    message = build_message(args)
    try:
        sock = socket.create_connection((args.server, args.port), timeout=10)
    except OSError as e:
        print("cannot connect to %s:%d: %s" % (args.server, args.port, e), file=sys.stderr)
        return 2
    f = sock.makefile("rb")
    open_conn = True
    try:
        code, lines = read_reply(f)
        if code != 220:
            print("server refused us: " + " / ".join(lines), file=sys.stderr)
            try:
                cmd(sock, f, "QUIT")
            except (OSError, Closed):
                pass
            return 2
        code, lines = cmd(sock, f, "HELO client.example")
        if code in (500, 502):
            code, lines = cmd(sock, f, "HELO client.example")
        if code != 250:
            print("HELO/EHLO refused: " + " / ".join(lines), file=sys.stderr)
            cmd(sock, f, "QUIT")
            return 1
        code, lines = cmd(sock, f, "MAIL FROM:<%s>" % args.sender)
        if code != 250:
            print("MAIL refused: " + " / ".join(lines), file=sys.stderr)
            cmd(sock, f, "QUIT")
            return 1
        accepted, refused = [], []
        for r in args.recipients:
            code, lines = cmd(sock, f, "RCPT TO:<%s>" % r)
            if code in (250, 251):
                accepted.append(r)
            else:
                refused.append(r)
                print("recipient %s refused: %s" % (r, " / ".join(lines)), file=sys.stderr)
        if not accepted:
            print("no recipient accepted, message not sent", file=sys.stderr)
            cmd(sock, f, "RSET")
            cmd(sock, f, "QUIT")
            return 1
        code, lines = cmd(sock, f, "DATA")
        if code != 354:
            print("DATA refused: " + " / ".join(lines), file=sys.stderr)
            cmd(sock, f, "QUIT")
            return 1
        sock.sendall(message + b".\r\n")
        code, lines = read_reply(f)
        if code != 250:
            print("message refused: " + " / ".join(lines), file=sys.stderr)
            cmd(sock, f, "QUIT")
            return 1
        try:
            cmd(sock, f, "QUIT")
        except (OSError, Closed):
            pass
        return 3 if refused else 0
    except socket.timeout:
        print("timed out waiting for the server", file=sys.stderr)
        try:
            sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        return 1
    except (Closed, OSError) as e:
        print("connection lost: %s" % e, file=sys.stderr)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
