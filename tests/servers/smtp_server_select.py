"""A correct SMTP server in another style (one thread, select() over non-blocking sockets),
for the server grader's tests: it must score 100 like the reference solution."""

import argparse
import os
import select
import signal
import socket
import sys
import time

running = True


def stop(*_):
    global running
    running = False


class Conn:
    def __init__(self, sock, srv):
        self.sock, self.srv = sock, srv
        self.buf = b""
        self.out = b""
        self.greeted, self.sender, self.rcpts = False, None, []
        self.data = None  # bytearray while reading a message
        self.closing = False
        self.say(f"220 {srv.domain} select SMTP")

    def say(self, text):
        self.out += text.encode() + b"\r\n"

    def feed(self, chunk):
        self.buf += chunk
        while not self.closing:
            if self.data is None and len(self.buf) > 512 and b"\n" not in self.buf[:512]:
                self.say("500 line too long")
                self.closing = True
                return
            i = self.buf.find(b"\n")
            if i < 0:
                return
            line, self.buf = self.buf[: i + 1], self.buf[i + 1:]
            if self.data is not None:
                self.data_line(line)
            else:
                self.command(line)

    def data_line(self, line):
        if line == b".\r\n" and (not self.data or self.data.endswith(b"\r\n")):
            for user in self.rcpts:
                self.srv.deliver(user, bytes(self.data))
            self.data, self.sender, self.rcpts = None, None, []
            self.say("250 queued")
        else:
            self.data += line[1:] if line.startswith(b".") else line

    def command(self, line):
        if len(line) > 512:
            self.say("500 line too long")
            return
        verb, _, arg = line.decode("utf-8", "replace").strip("\r\n").partition(" ")
        verb = verb.upper()
        if verb == "QUIT":
            self.say("221 bye")
            self.closing = True
        elif verb in ("HELO", "EHLO"):
            if not arg.strip():
                self.say("501 domain needed")
            else:
                self.greeted, self.sender, self.rcpts = True, None, []
                self.say(f"250-{self.srv.domain}\r\n250 PIPELINING" if verb == "EHLO" else f"250 {self.srv.domain}")
        elif verb == "NOOP":
            self.say("250 ok")
        elif verb == "RSET":
            self.sender, self.rcpts = None, []
            self.say("250 ok")
        elif verb not in ("MAIL", "RCPT", "DATA"):
            self.say("500 what?")
        elif not self.greeted:
            self.say("503 EHLO first")
        elif verb == "MAIL":
            p = self.path(arg, "FROM:")
            if self.sender is not None:
                self.say("503 already")
            elif p is None:
                self.say("501 bad path")
            else:
                self.sender = p
                self.say("250 ok")
        elif verb == "RCPT":
            p = self.path(arg, "TO:")
            if self.sender is None:
                self.say("503 MAIL first")
            elif not p or "@" not in p:
                self.say("501 bad path")
            else:
                local, _, dom = p.rpartition("@")
                user = local.lower()
                if dom.lower() == self.srv.domain.lower() and user.isprintable() and "/" not in user \
                        and not user.startswith(".") and os.path.isdir(os.path.join(self.srv.root, user)):
                    self.rcpts.append(user)
                    self.say("250 ok")
                else:
                    self.say("550 not here")
        elif self.sender is None or not self.rcpts:
            self.say("554 no valid recipients")
        else:
            self.data = bytearray()
            self.say("354 send it")

    @staticmethod
    def path(arg, kw):
        if not arg.upper().startswith(kw):
            return None
        rest = arg[len(kw):].strip()
        return rest[1:rest.index(">")] if rest.startswith("<") and ">" in rest else None


class Server:
    def __init__(self, port, root, domain):
        self.root, self.domain = root, domain
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.conns = {}
        self.n = 0

    def deliver(self, user, message):
        self.n += 1
        name = f"{time.time_ns()}.{os.getpid()}_{self.n}.select"
        tmp = os.path.join(self.root, user, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message)
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.root, user, "new", name))

    def loop(self):
        while running:
            writers = [s for s, c in self.conns.items() if c.out]
            try:
                r, w, _ = select.select([self.lsock, *self.conns], writers, [], 0.2)
            except InterruptedError:
                continue
            for s in r:
                if s is self.lsock:
                    try:
                        sock, _ = s.accept()
                    except OSError:
                        continue
                    sock.setblocking(False)
                    self.conns[sock] = Conn(sock, self)
                    continue
                c = self.conns.get(s)
                if c is None:
                    continue
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.drop(s)
                else:
                    c.feed(chunk)
            for s in w:
                c = self.conns.get(s)
                if c is None:
                    continue
                try:
                    sent = s.send(c.out)
                    c.out = c.out[sent:]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self.drop(s)
                    continue
                if not c.out and c.closing:
                    self.drop(s)
        for s in list(self.conns):
            self.drop(s)
        self.lsock.close()

    def drop(self, s):
        self.conns.pop(s, None)
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--domain", default="lab.test")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, stop)
    Server(a.port, a.maildir, a.domain).loop()
    sys.exit(0)


if __name__ == "__main__":
    main()
