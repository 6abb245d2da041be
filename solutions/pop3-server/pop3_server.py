"""A small POP3 server (RFC 1939) over Maildirs: the reference solution.

    python pop3_server.py --port PORT --maildir DIR --users FILE

One thread per client.  The maildrop of user U is the files of DIR/U/new/ and DIR/U/cur/,
numbered 1..n by file name.  Deletions happen only in the UPDATE state, after QUIT (§6).
"""

import argparse
import os
import signal
import socket
import socketserver
import sys
import threading

MAX_COMMAND_LINE = 255  # octets, CRLF included (RFC 2449 §4)
IDLE_TIMEOUT = 600  # seconds: at least 10 minutes (RFC 1939 §3)

locked = set()  # users whose maildrop is in use (RFC 1939 §4: one session per maildrop)
locked_guard = threading.Lock()


def to_crlf(data):
    """Line ends as CRLF, and a final line break (what the client receives, and what sizes count)."""
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def byte_stuff(data):
    """RFC 1939 §3: a line starting with "." gets one more; the response ends with ".CRLF"."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class Message:
    def __init__(self, path):
        self.path = path
        self.uid = os.path.basename(path).split(":")[0]  # Maildir: unique up to the ':' info
        self.deleted = False
        with open(path, "rb") as f:
            self.data = to_crlf(f.read())
        self.size = len(self.data)


def load_maildrop(directory):
    paths = []
    for sub in ("new", "cur"):
        folder = os.path.join(directory, sub)
        if os.path.isdir(folder):
            paths += [os.path.join(folder, name) for name in os.listdir(folder)]
    paths.sort(key=lambda p: os.fsencode(os.path.basename(p)))  # by file name, byte order
    return [Message(p) for p in paths]


class Session(socketserver.StreamRequestHandler):
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        self.server.connections.add(self.request)

    def finish(self):
        self.server.connections.discard(self.request)
        try:
            super().finish()
        except OSError:
            pass

    def send(self, text):
        self.wfile.write(text.encode("utf-8") + b"\r\n")

    def read_line(self):
        """One command line; b'' at end of input; None when too long (the rest is discarded)."""
        line = self.rfile.readline(MAX_COMMAND_LINE + 1)
        if len(line) <= MAX_COMMAND_LINE or line.endswith(b"\n"):
            return line
        while line and not line.endswith(b"\n"):
            line = self.rfile.readline(65536)
        return None

    def handle(self):
        self.user = None  # locked maildrop owner, once authenticated
        try:
            self.dialogue()
        except (OSError, socket.timeout):
            pass  # dropped connection: no UPDATE state, nothing is deleted (§6)
        finally:
            self.release()

    def release(self):
        if self.user is not None:
            with locked_guard:
                locked.discard(self.user)
            self.user = None

    def dialogue(self):
        self.send("+OK POP3 reference server ready")
        name = None
        messages = None  # None: AUTHORIZATION state; a list: TRANSACTION state
        while True:
            line = self.read_line()
            if line == b"":
                return
            if line is None:
                self.send("-ERR line too long")
                continue
            words = line.decode("utf-8", "replace").split()
            verb = words[0].upper() if words else ""
            args = words[1:]
            if verb == "QUIT":
                if messages is not None:  # UPDATE state (§6)
                    for m in messages:
                        if m.deleted:
                            try:
                                os.remove(m.path)
                            except FileNotFoundError:
                                pass
                self.release()  # before +OK: the client may open the next session at once
                self.send("+OK bye")
                return
            if messages is None:
                if verb == "USER" and len(args) == 1:
                    name = args[0]
                    self.send("+OK send PASS")
                elif verb == "PASS" and name is not None and args:
                    messages = self.login(name, line.decode("utf-8", "replace").split(" ", 1)[1].rstrip("\r\n"))
                    name = None
                elif verb in ("USER", "PASS"):
                    self.send("-ERR USER name, then PASS password")
                else:
                    self.send("-ERR not allowed before login (USER, PASS or QUIT)")
                continue
            self.transaction(verb, args, messages)

    def login(self, name, password):
        if self.server.users.get(name) != password:
            self.send("-ERR wrong user name or password")
            return None
        with locked_guard:
            if name in locked:
                self.send("-ERR maildrop already locked by another session")
                return None
            locked.add(name)
        self.user = name
        try:
            messages = load_maildrop(os.path.join(self.server.maildir, name))
        except OSError:
            messages = []
        self.send(f"+OK {len(messages)} messages")
        return messages

    def transaction(self, verb, args, messages):
        live = [m for m in messages if not m.deleted]
        if verb == "STAT" and not args:
            self.send(f"+OK {len(live)} {sum(m.size for m in live)}")
        elif verb in ("LIST", "UIDL") and not args:
            self.send("+OK")
            for n, m in enumerate(messages, 1):
                if not m.deleted:
                    self.send(f"{n} {m.size if verb == 'LIST' else m.uid}")
            self.send(".")
        elif verb in ("LIST", "UIDL", "RETR", "DELE", "TOP") and args:
            m = self.message(args[0], messages)
            if m is None:
                return
            n = args[0]
            if verb == "LIST" and len(args) == 1:
                self.send(f"+OK {n} {m.size}")
            elif verb == "UIDL" and len(args) == 1:
                self.send(f"+OK {n} {m.uid}")
            elif verb == "RETR" and len(args) == 1:
                self.send(f"+OK {m.size} octets")
                self.wfile.write(byte_stuff(m.data))
            elif verb == "DELE" and len(args) == 1:
                m.deleted = True
                self.send(f"+OK message {n} deleted")
            elif verb == "TOP" and len(args) == 2 and args[1].isdigit():
                head, blank, body = m.data.partition(b"\r\n\r\n")
                lines = body.split(b"\r\n")[:-1][: int(args[1])]
                self.send("+OK")
                self.wfile.write(byte_stuff(head + blank + b"".join(x + b"\r\n" for x in lines)))
            else:
                self.send("-ERR bad arguments")
        elif verb == "NOOP" and not args:
            self.send("+OK")
        elif verb == "RSET" and not args:
            for m in messages:
                m.deleted = False
            self.send(f"+OK {len(messages)} messages")
        else:
            self.send("-ERR unknown command or bad arguments")

    def message(self, number, messages):
        """The message numbered ``number`` (1-based), or None after sending -ERR."""
        if not number.isdigit() or not 1 <= int(number) <= len(messages):
            self.send("-ERR no such message")
            return None
        m = messages[int(number) - 1]
        if m.deleted:
            self.send("-ERR message already deleted")
            return None
        return m


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port, maildir, users):
        super().__init__(("127.0.0.1", port), Session)
        self.maildir = maildir
        self.users = users
        self.connections = set()


def read_users(path):
    users = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, sep, password = line.rstrip("\r\n").partition(":")
            if sep:
                users[name] = password
    return users


def main():
    parser = argparse.ArgumentParser(description="A small POP3 server over Maildirs.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--users", required=True)
    args = parser.parse_args()
    server = Server(args.port, args.maildir, read_users(args.users))

    def stop(signum, frame):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    for conn in list(server.connections):  # close the sessions still open: they delete nothing
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
