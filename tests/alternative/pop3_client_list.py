"""A correct pop3-client in another style (LIST, a byte buffer searched for CRLF.CRLF)."""
import os
import re
import socket
import sys
from argparse import ArgumentParser


class Gone(Exception):
    pass


class P:
    def __init__(self, s):
        self.s, self.buf = s, b""

    def more(self):
        try:
            d = self.s.recv(8192)
        except OSError as e:
            raise Gone(str(e))
        if not d:
            raise Gone("closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        i = self.buf.index(b"\r\n")
        l, self.buf = self.buf[:i], self.buf[i + 2:]
        return l.decode("latin-1")

    def multi(self):
        # the body ends with CRLF "." CRLF; the status line was read already
        while not (self.buf.startswith(b".\r\n") or b"\r\n.\r\n" in self.buf):
            self.more()
        if self.buf.startswith(b".\r\n"):
            data, self.buf = b"", self.buf[3:]
        else:
            i = self.buf.index(b"\r\n.\r\n")
            data, self.buf = self.buf[:i + 2], self.buf[i + 5:]
        return re.sub(rb"(?m)^\.", b"", data.replace(b"\r\n..", b"\r\n.")) if False else \
            b"\r\n".join(x[1:] if x.startswith(b".") else x for x in data.split(b"\r\n"))

    def do(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()


def main():
    ap = ArgumentParser()
    for o in ("--server", "--user", "--password", "--out"):
        ap.add_argument(o)
    ap.add_argument("--port", type=int)
    ap.add_argument("--delete", action="store_true")
    a = ap.parse_args()
    try:
        s = socket.create_connection((a.server, a.port))
    except OSError as e:
        print(e, file=sys.stderr)
        return 2
    s.settimeout(10)
    p = P(s)
    try:
        greeting = p.line()
        if not greeting.startswith("+OK"):
            print("server refused the session:", greeting, file=sys.stderr)  # every non-zero exit says why
            return 2
        for c in ("USER " + a.user, "PASS " + a.password):
            r = p.do(c)
            if r.startswith("-ERR"):
                print(r, file=sys.stderr)
                p.do("QUIT")
                return 1
        r = p.do("LIST")
        p.multi_lines = p.multi()
        nums = [int(l.split()[0]) for l in p.multi_lines.decode().split("\r\n") if l.strip()]
        os.makedirs(a.out, exist_ok=True)
        for n in nums:
            if p.do(f"RETR {n}").startswith("+OK"):
                with open(os.path.join(a.out, f"{n}.eml"), "wb") as f:
                    f.write(p.multi())
        if a.delete:
            for n in nums:
                p.do(f"DELE {n}")
        p.do("QUIT")
        return 0
    except (Gone, socket.timeout) as e:
        print("server gone:", e, file=sys.stderr)
        return 1


sys.exit(main())
