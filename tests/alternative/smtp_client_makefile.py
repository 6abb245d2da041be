"""A correct smtp-client in another style (a file object for reading, RSET, quoted-printable,
one sendall per line): written apart from the reference to keep the checks honest."""
import argparse
import quopri
import socket
import sys
from email.header import Header
from email.utils import formatdate, make_msgid


def reply(f):
    lines = []
    while True:
        raw = f.readline()
        if not raw:
            raise ConnectionError("connection closed by the server")
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        lines.append(line)
        if line[3:4] != "-":
            return int(line[:3]), "\n".join(lines)


def cmd(sock, f, text):
    sock.sendall(text.encode() + b"\r\n")
    return reply(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server")
    ap.add_argument("--port", type=int)
    ap.add_argument("--from", dest="frm")
    ap.add_argument("--to", action="append")
    ap.add_argument("--subject")
    ap.add_argument("--body-file")
    a = ap.parse_args()
    body = open(a.body_file, encoding="utf-8").read()
    try:
        s = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        sys.stderr.write(f"connect: {e}\n")
        sys.exit(2)
    f = s.makefile("rb")
    try:
        code, text = reply(f)
        if code >= 400:
            sys.stderr.write(text + "\n")
            try:
                cmd(s, f, "QUIT")
            except (OSError, ConnectionError):
                pass
            sys.exit(2)
        code, text = cmd(s, f, "EHLO localhost")
        if code in (500, 502):
            code, text = cmd(s, f, "HELO localhost")
        code, text = cmd(s, f, "MAIL FROM: <%s>" % a.frm if False else "MAIL FROM:<%s>" % a.frm)
        if code != 250:
            sys.stderr.write(text + "\n")
            cmd(s, f, "RSET")
            cmd(s, f, "QUIT")
            sys.exit(1)
        ok = []
        for r in a.to:
            code, text = cmd(s, f, f"RCPT TO:<{r}>")
            if code // 100 == 2:
                ok.append(r)
            else:
                sys.stderr.write(f"{r}: {text}\n")
        if not ok:
            cmd(s, f, "RSET")
            cmd(s, f, "QUIT")
            sys.exit(1)
        code, text = cmd(s, f, "DATA")
        if code != 354:
            sys.stderr.write(text + "\n")
            cmd(s, f, "QUIT")
            sys.exit(1)
        subj = a.subject if a.subject.isascii() else Header(a.subject, "utf-8").encode()
        head = [f"From: {a.frm}", "To: " + ", ".join(a.to), f"Subject: {subj}",
                f"Date: {formatdate()}", f"Message-ID: {make_msgid()}"]
        if body.isascii():
            text_lines = body.splitlines()
        else:
            head += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"',
                     "Content-Transfer-Encoding: quoted-printable"]
            text_lines = quopri.encodestring(body.encode("utf-8")).decode("ascii").splitlines()
        for line in head + [""] + text_lines:
            if line.startswith("."):
                line = "." + line
            s.sendall(line.encode("ascii") + b"\r\n")
        s.sendall(b".\r\n")
        code, text = reply(f)
        if code != 250:
            sys.stderr.write(text + "\n")
            cmd(s, f, "QUIT")
            sys.exit(1)
        cmd(s, f, "QUIT")
        sys.exit(0 if len(ok) == len(a.to) else 3)
    except (OSError, ConnectionError) as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(1)


main()
