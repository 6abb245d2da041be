# DEFECTIVE on purpose (mutation test): must lose points on pop3.whole-reply and nowhere else.
# Written by the independent tester.
# Finding F17 of the independent grader review (commit messages cite it by that id).
#!/usr/bin/env python3
# POP3 client, style B: recv loop + buffer, LIST (multi-line) instead of STAT,
# message read until CRLF.CRLF in the buffer, deletes all at the end, before QUIT.
import argparse, os, socket, sys

def die(code, text, sock=None):
    sys.stderr.write(text + "\n")
    if sock is not None:
        try:
            sock.sendall(b"QUIT\r\n")
            sock.settimeout(2)
            sock.recv(100)
        except OSError:
            pass
        sock.close()
    sys.exit(code)

class Pop:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def more(self):
        d = self.sock.recv(8192)
        if not d:
            raise EOFError("server hung up")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def block(self):
        # multi-line body after the status line: ends with a line holding only "."
        if not self.buf:
            self.more()  # the rest of the message is in this recv()
        if not self.buf.endswith(b"\r\n.\r\n") and self.buf != b".\r\n":
            raw, self.buf = self.buf, b""
            return raw
        while True:
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            idx = self.buf.find(b"\r\n.\r\n")
            if idx >= 0:
                raw = self.buf[:idx + 2]
                self.buf = self.buf[idx + 5:]
                return raw
            self.more()

    def ask(self, c):
        self.sock.sendall(c.encode("utf-8") + b"\r\n")
        return self.line()

def unstuff(raw):
    out = []
    for l in raw.split(b"\r\n"):
        if l.startswith(b".."):
            l = l[1:]
        out.append(l)
    return b"\r\n".join(out)

ap = argparse.ArgumentParser()
for o in ("--server", "--user", "--password", "--out"):
    ap.add_argument(o, required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--delete", action="store_true")
args = ap.parse_args()

if not os.path.isdir(args.out):
    os.makedirs(args.out)
try:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((args.server, args.port))
except OSError as e:
    die(2, "connect failed: %s" % e)

p = Pop(sock)
try:
    greet = p.line()
    if not greet.startswith(b"+OK"):
        die(2, "bad greeting: " + greet.decode("latin-1"), sock)
    for c in ("USER " + args.user, "PASS " + args.password):
        r = p.ask(c)
        if r.startswith(b"-ERR"):
            die(1, "login failed: " + r.decode("latin-1"), sock)
    r = p.ask("LIST")
    if not r.startswith(b"+OK"):
        die(1, "LIST failed: " + r.decode("latin-1"), sock)
    listing = p.block()
    nums = [int(l.split()[0]) for l in listing.split(b"\r\n") if l.strip()]
    for n in nums:
        r = p.ask("RETR %d" % n)
        if not r.startswith(b"+OK"):
            die(1, "RETR failed: " + r.decode("latin-1"), sock)
        content = unstuff(p.block())
        with open(os.path.join(args.out, str(n) + ".eml"), "wb") as fh:
            fh.write(content)
    if args.delete:
        for n in nums:
            r = p.ask("DELE %d" % n)
            if not r.startswith(b"+OK"):
                sys.stderr.write("could not delete %d\n" % n)
    r = p.ask("QUIT")
    sock.close()
    sys.exit(0)
except socket.timeout:
    die(1, "timeout: no answer from the server", sock)
except (EOFError, OSError) as e:
    die(1, "connection error: %s" % e)
