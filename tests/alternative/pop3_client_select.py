# Written by the independent tester, from the contract
# only (the independent grader review): a correct client in another style; it must score full marks.
#!/usr/bin/env python3
"""POP3 client, style C: select() with a deadline; CAPA first (RFC 2449); lower-case
commands (RFC 1939 §3: keywords are case-insensitive); "list n" before each "retr n";
UIDL; NOOP before QUIT."""
import argparse
import os
import select
import socket
import sys
import time


class Fail(Exception):
    pass


class Reader:
    def __init__(self, s):
        self.s = s
        self.buf = bytearray()

    def _fill(self):
        end = time.monotonic() + 10
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("timed out after 10 s waiting for the server")
            ready, _, _ = select.select([self.s], [], [], left)
            if ready:
                data = self.s.recv(2048)
                if not data:
                    raise Fail("the server closed the connection")
                self.buf += data
                return

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i + 2])
                del self.buf[:i + 2]
                return out
            self._fill()

    def status(self):
        l = self.line().rstrip(b"\r\n").decode("latin-1")
        return l.startswith("+OK"), l

    def body(self):
        out = bytearray()
        while True:
            l = self.line()
            if l == b".\r\n":
                return bytes(out)
            out += l[1:] if l[:1] == b"." else l


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--delete", action="store_true")
    a = p.parse_args()
    try:
        s = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        sys.stderr.write("pop3_client: %s\n" % e)
        return 2
    s.setblocking(False)
    r = Reader(s)

    def send(c):
        s.setblocking(True)
        s.sendall(c.encode() + b"\r\n")
        s.setblocking(False)

    def cmd(c):
        send(c)
        return r.status()

    try:
        ok, text = r.status()
        if not ok:
            sys.stderr.write("greeting: %s\n" % text)
            try:
                cmd("quit")
            except (Fail, OSError):
                pass
            return 2
        ok, text = cmd("capa")
        if ok:
            r.body()
        ok, text = cmd("user " + a.user)
        if ok:
            ok, text = cmd("pass " + a.password)
        if not ok:
            sys.stderr.write("login refused: %s\n" % text)
            cmd("quit")
            return 1
        os.makedirs(a.out, exist_ok=True)
        ok, text = cmd("stat")
        if not ok:
            raise Fail(text)
        n = int(text.split()[1])
        ok, text = cmd("uidl")
        if ok:
            r.body()
        for i in range(1, n + 1):
            ok, text = cmd("list %d" % i)
            if not ok:
                continue
            ok, text = cmd("retr %d" % i)
            if not ok:
                sys.stderr.write("retr %d: %s\n" % (i, text))
                continue
            data = r.body()
            with open(os.path.join(a.out, "%d.eml" % i), "wb") as f:
                f.write(data)
            if a.delete:
                ok, text = cmd("dele %d" % i)
        cmd("noop")
        ok, text = cmd("quit")
        if not ok:
            sys.stderr.write("quit: %s\n" % text)
            return 1
        return 0
    except Fail as e:
        sys.stderr.write("pop3_client: %s\n" % e)
        if "timed out" in str(e):
            try:
                send("quit")
            except OSError:
                pass
        return 1
    except OSError as e:
        sys.stderr.write("pop3_client: %s\n" % e)
        return 1
    finally:
        s.close()


if __name__ == "__main__":
    sys.exit(main())
