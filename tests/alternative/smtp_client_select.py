# Written by the independent tester, from the contract
# only (the independent grader review): a correct client in another style; it must score full marks.
#!/usr/bin/env python3
"""SMTP client, style E: non-blocking socket + select() with a 10 s deadline per reply;
EHLO with an address literal; SIZE= on MAIL when SIZE is advertised (RFC 1870); a folded To:
header; a Q-encoded subject in several encoded-words; message written in 100-octet pieces;
no QUIT after a 421 greeting (the server closes: RFC 5321 §3.1), QUIT after 554."""
import argparse
import quopri
import select
import socket
import sys
import time
import email.utils


class Trouble(Exception):
    def __init__(self, msg, status=1):
        super().__init__(msg)
        self.status = status


class Wire:
    def __init__(self, sock):
        self.sock = sock
        self.sock.setblocking(False)
        self.pending = b""

    def readline(self):
        deadline = time.monotonic() + 10
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Trouble("timeout: the server did not reply within 10 s")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(512)
            except BlockingIOError:
                continue
            if not chunk:
                raise Trouble("the server closed the connection")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.rstrip(b"\r").decode("ascii", "replace")

    def reply(self):
        lines = [self.readline()]
        while lines[-1][3:4] == "-":
            lines.append(self.readline())
        return int(lines[-1][:3]), lines

    def write(self, data):
        self.sock.setblocking(True)
        self.sock.settimeout(10)
        try:
            for i in range(0, len(data), 100):
                self.sock.sendall(data[i:i + 100])
        finally:
            self.sock.setblocking(False)

    def cmd(self, line):
        self.write(line.encode("ascii") + b"\r\n")
        return self.reply()


def q_words(text):
    """RFC 2047 Q encoding, several encoded-words of at most 75 characters, folded."""
    words, cur = [], ""
    for ch in text:
        b = ch.encode("utf-8")
        tok = "".join(chr(x) if (x < 128 and (chr(x).isalnum() or chr(x) in "!*+-/")) else
                      ("_" if x == 32 else "=%02X" % x) for x in b)
        if len("=?utf-8?q?" + cur + tok + "?=") > 75:
            words.append(cur)
            cur = ""
        cur += tok
    words.append(cur)
    return "\r\n ".join("=?utf-8?q?%s?=" % w for w in words)


def compose(a):
    text = open(a.body_file, encoding="utf-8").read()
    subj = a.subject if a.subject.isascii() else q_words(a.subject)
    to = ",\r\n    ".join(a.to)
    hdr = ["From: %s" % a.sender, "To: %s" % to, "Subject: %s" % subj,
           "Date: %s" % email.utils.formatdate(usegmt=True),
           "Message-ID: %s" % email.utils.make_msgid("e")]
    lines = text.split("\n")
    if lines[-1] == "":
        lines = lines[:-1]
    if not text.isascii():
        hdr += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=\"UTF-8\"",
                "Content-Transfer-Encoding: quoted-printable"]
        lines = quopri.encodestring(text.encode("utf-8")).decode("ascii").split("\n")
        if lines[-1] == "":
            lines = lines[:-1]
    body = "\r\n".join(hdr) + "\r\n\r\n"
    for l in lines:
        body += ("." if l.startswith(".") else "") + l.rstrip("\r") + "\r\n"
    return body.encode("ascii")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--body-file", required=True)
    a = p.parse_args()
    msg = compose(a)
    try:
        s = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        print("connect: %s" % e, file=sys.stderr)
        return 2
    w = Wire(s)
    try:
        code, lines = w.reply()
        if code == 421:
            raise Trouble("server busy: " + lines[-1], 2)
        if code != 220:
            w.cmd("QUIT")
            raise Trouble("server refuses service: " + lines[-1], 2)
        code, lines = w.cmd("EHLO [127.0.0.1]")
        ext = [l[4:].upper() for l in lines[1:]] if code == 250 else []
        if code in (500, 502):
            code, lines = w.cmd("HELO [127.0.0.1]")
        if code != 250:
            w.cmd("QUIT")
            raise Trouble("HELO: " + lines[-1])
        size = " SIZE=%d" % len(msg) if any(e.split()[0] == "SIZE" for e in ext if e) else ""
        code, lines = w.cmd("MAIL FROM:<%s>%s" % (a.sender, size))
        if code >= 300:
            w.cmd("QUIT")
            raise Trouble("MAIL: " + lines[-1])
        good = []
        for r in a.to:
            code, lines = w.cmd("RCPT TO:<%s>" % r)
            if code in (250, 251):
                good.append(r)
            else:
                print("%s rejected: %s" % (r, lines[-1]), file=sys.stderr)
        if not good:
            w.cmd("QUIT")
            raise Trouble("no valid recipients")
        code, lines = w.cmd("DATA")
        if code != 354:
            w.cmd("QUIT")
            raise Trouble("DATA: " + lines[-1])
        w.write(msg + b".\r\n")
        code, lines = w.reply()
        if code != 250:
            w.cmd("QUIT")
            raise Trouble("message not accepted: " + lines[-1])
        w.cmd("QUIT")
        return 0 if len(good) == len(a.to) else 3
    except Trouble as t:
        print(t, file=sys.stderr)
        if str(t).startswith("timeout"):
            try:
                w.write(b"QUIT\r\n")
            except OSError:
                pass
        return t.status
    except OSError as e:
        print("network error: %s" % e, file=sys.stderr)
        return 1
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
