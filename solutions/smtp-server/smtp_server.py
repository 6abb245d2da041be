"""A small SMTP server (RFC 5321) that delivers into Maildirs: the reference solution.

    python smtp_server.py --port PORT --maildir DIR [--domain DOMAIN]

One thread per client (socketserver.ThreadingTCPServer), so a slow client never delays the
others.  The mailbox of user U is DIR/U/ (tmp/, new/, cur/); U@DOMAIN exists when DIR/U/ does.
"""

import argparse
import os
import signal
import socket
import socketserver
import sys
import threading
import time

MAX_COMMAND_LINE = 512  # octets, CRLF included (RFC 5321 §4.5.3.1.4)
MAX_TEXT_LINE = 1000  # octets in DATA, CRLF included (§4.5.3.1.6); longer lines are kept anyway
MAX_MESSAGE = 20 * 1024 * 1024  # a message larger than this gets 552 (§4.5.3.1.10)
MAX_RECIPIENTS = 100  # §4.5.3.1.8
IDLE_TIMEOUT = 300  # seconds (§4.5.3.2.7)

_counter = 0
_counter_lock = threading.Lock()


def unique_name():
    """A Maildir file name no other delivery uses: time, pid, a counter, the host."""
    global _counter
    with _counter_lock:
        _counter += 1
        n = _counter
    now = time.time()
    return f"{int(now)}.M{int(now * 1e6) % 1000000}P{os.getpid()}Q{n}.{socket.gethostname()}"


def deliver(mailbox, message):
    """Write the message into mailbox/tmp/, fsync it, then rename it into mailbox/new/.

    The rename is atomic: a reader of new/ sees the whole message or nothing.
    """
    name = unique_name()
    tmp_path = os.path.join(mailbox, "tmp", name)
    with open(tmp_path, "wb") as f:
        f.write(message)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp_path, os.path.join(mailbox, "new", name))
    directory = os.open(os.path.join(mailbox, "new"), os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the disk
    finally:
        os.close(directory)


def parse_path(argument, keyword):
    """'FROM:<a@b>' -> 'a@b' ('' for the null path <>); None when malformed (501)."""
    if not argument.upper().startswith(keyword):
        return None
    rest = argument[len(keyword):].strip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    return rest[1:rest.index(">")]


class Session(socketserver.StreamRequestHandler):
    """One client connection: the SMTP dialogue (RFC 5321 §4.1)."""

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

    def reply(self, text):
        self.wfile.write(text.encode("utf-8") + b"\r\n")

    def read_line(self, limit):
        """One line, CRLF included; b'' at end of input; None when longer than limit (discarded)."""
        line = self.rfile.readline(limit + 1)
        if len(line) <= limit or line.endswith(b"\n"):
            return line
        while line and not line.endswith(b"\n"):  # throw away the rest of the long line
            line = self.rfile.readline(65536)
        return None

    def handle(self):
        try:
            self.dialogue()
        except (OSError, socket.timeout):
            pass  # the client went away: nothing was delivered for an unfinished message

    def dialogue(self):
        domain = self.server.domain
        self.reply(f"220 {domain} ESMTP reference server ready")
        greeted = False
        sender = None  # None: no transaction; '' is the null reverse-path
        recipients = []
        while True:
            line = self.read_line(MAX_COMMAND_LINE)
            if line == b"":
                return
            if line is None:
                self.reply("500 5.5.2 Line too long")
                continue
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb, _, argument = text.partition(" ")
            verb = verb.upper()
            if verb in ("HELO", "EHLO"):
                if not argument.strip():
                    self.reply(f"501 5.5.4 {verb} needs a domain")
                    continue
                greeted, sender, recipients = True, None, []
                if verb == "EHLO":
                    self.reply(f"250-{domain} greets {argument.strip()}")
                    self.reply("250-8BITMIME")
                    self.reply("250 PIPELINING")
                else:
                    self.reply(f"250 {domain}")
            elif verb == "NOOP":
                self.reply("250 2.0.0 OK")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 2.0.0 OK")
            elif verb == "QUIT":
                self.reply(f"221 2.0.0 {domain} closing connection")
                return
            elif verb not in ("MAIL", "RCPT", "DATA"):
                self.reply("500 5.5.1 Command unrecognized")
            elif not greeted:
                self.reply("503 5.5.1 Say HELO or EHLO first")
            elif verb == "MAIL":
                path = parse_path(argument, "FROM:")
                if sender is not None:
                    self.reply("503 5.5.1 Sender already given (RSET first)")
                elif path is None:
                    self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                else:
                    sender, recipients = path, []
                    self.reply("250 2.1.0 Sender OK")
            elif verb == "RCPT":
                path = parse_path(argument, "TO:")
                if sender is None:
                    self.reply("503 5.5.1 Need MAIL before RCPT")
                elif not path or "@" not in path:
                    self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
                elif len(recipients) >= MAX_RECIPIENTS:
                    self.reply("452 4.5.3 Too many recipients")
                else:
                    self.recipient(path, recipients)
            else:  # DATA
                if argument.strip():
                    self.reply("501 5.5.4 DATA takes no argument")
                elif sender is None or not recipients:
                    self.reply("503 5.5.1 Need RCPT before DATA")
                else:
                    self.data(recipients)
                    sender, recipients = None, []

    def recipient(self, path, recipients):
        local, _, domain = path.rpartition("@")
        user = local.lower()
        mailbox = os.path.join(self.server.maildir, user)
        if domain.lower() != self.server.domain.lower():
            self.reply("550 5.7.1 Relaying denied: not a local domain")
        elif not user or "/" in user or user.startswith(".") or not os.path.isdir(mailbox):
            self.reply("550 5.1.1 No such user here")
        else:
            recipients.append(mailbox)
            self.reply("250 2.1.5 Recipient OK")

    def data(self, recipients):
        """Read the message up to CRLF.CRLF, unstuff it and deliver it (RFC 5321 §4.1.1.4, §4.5.2)."""
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        lines = []
        size = 0
        after_crlf = True  # the DATA command itself ended in CRLF
        while True:
            line = self.rfile.readline(65536)
            if line == b"":
                return  # connection closed before the final dot: deliver nothing
            if line == b".\r\n" and after_crlf:
                break
            after_crlf = line.endswith(b"\r\n")
            if line.startswith(b"."):
                line = line[1:]  # dot-unstuffing: a line starting with "." lost its first dot
            size += len(line)
            if size <= MAX_MESSAGE:
                lines.append(line)
        if size > MAX_MESSAGE:
            self.reply("552 5.3.4 Message too big")
            return
        message = b"".join(lines)
        for mailbox in recipients:
            deliver(mailbox, message)
        self.reply("250 2.0.0 Message accepted for delivery")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port, maildir, domain):
        super().__init__(("127.0.0.1", port), Session)
        self.maildir = maildir
        self.domain = domain
        self.connections = set()


def main():
    parser = argparse.ArgumentParser(description="A small SMTP server delivering into Maildirs.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--domain", default="lab.test")
    args = parser.parse_args()
    server = Server(args.port, args.maildir, args.domain)

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return: call it from another thread
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    for conn in list(server.connections):  # close the connections still open
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
