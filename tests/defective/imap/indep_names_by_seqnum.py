# DEFECTIVE on purpose (mutation test): must lose points on imap.selection and nowhere else.
# Written by the independent tester.
# Finding F11 of the independent grader review (commit messages cite it by that id).
#!/usr/bin/env python3
"""IMAP client, style A: makefile, quoted strings, always SELECT, tags A0001..."""
import argparse
import os
import re
import socket
import sys

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


class Gone(Exception):
    pass


class IMAP:
    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")
        self.n = 0

    def read_response(self):
        """One response line, with its literals: returns (text_bytes, [literal bytes...])."""
        parts, lits = [], []
        while True:
            line = self.f.readline()
            if not line.endswith(b"\n"):
                raise Gone("the server closed the connection")
            parts.append(line)
            m = LITERAL.search(line)
            if not m:
                return b"".join(parts), lits
            size = int(m.group(1))
            data = self.f.read(size)
            if len(data) < size:
                raise Gone("connection closed inside a literal")
            lits.append(data)
            parts.append(b"<literal>")

    def command(self, text):
        self.n += 1
        tag = "A%04d" % self.n
        self.sock.sendall(("%s %s\r\n" % (tag, text)).encode("utf-8"))
        untagged = []
        while True:
            line, lits = self.read_response()
            if line.startswith(tag.encode() + b" "):
                rest = line[len(tag) + 1:].decode("utf-8", "replace").strip()
                return rest.split(" ", 1)[0].upper(), rest, untagged
            untagged.append((line, lits))


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--unseen-only", action="store_true")
    p.add_argument("--mark-seen", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    try:
        sock = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        print("cannot connect: %s" % e, file=sys.stderr)
        return 2
    c = IMAP(sock)
    logged_out = False

    def logout():
        try:
            c.command("LOGOUT")
        except (OSError, Gone):
            pass

    try:
        greet, _ = c.read_response()
        if greet.startswith(b"* BYE"):
            print("server said: " + greet.decode("utf-8", "replace").strip(), file=sys.stderr)
            return 2
        if not greet.startswith(b"* OK") and not greet.startswith(b"* PREAUTH"):
            print("unexpected greeting", file=sys.stderr)
            logout()
            return 2
        st, rest, _ = c.command("LOGIN %s %s" % (quote(a.user), quote(a.password)))
        if st != "OK":
            print("login refused: " + rest, file=sys.stderr)
            logout()
            return 1
        st, rest, _ = c.command("SELECT " + quote(a.mailbox))
        if st != "OK":
            print("cannot select %s: %s" % (a.mailbox, rest), file=sys.stderr)
            logout()
            return 1
        st, rest, unt = c.command("UID SEARCH " + ("UNSEEN" if a.unseen_only else "ALL"))
        if st != "OK":
            print("search failed: " + rest, file=sys.stderr)
            logout()
            return 1
        uids = []
        for line, _ in unt:
            if line.upper().startswith(b"* SEARCH"):
                uids += [int(x) for x in line[8:].split()]
        for seq, uid in enumerate(uids, 1):
            st, rest, unt = c.command("UID FETCH %d BODY.PEEK[]" % uid)
            if st != "OK":
                print("fetch %d failed: %s" % (uid, rest), file=sys.stderr)
                continue
            body = None
            for line, lits in unt:
                if b" FETCH " in line.upper() and b"BODY[]" in line.upper() and lits:
                    m = re.search(rb"UID (\d+)", line)
                    if m and int(m.group(1)) != uid:
                        continue
                    body = lits[0]
            if body is None:
                print("no body for UID %d" % uid, file=sys.stderr)
                continue
            with open(os.path.join(a.out, "%d.eml" % seq), "wb") as fh:
                fh.write(body)
            if a.mark_seen:
                st, rest, _ = c.command("UID STORE %d +FLAGS (\\Seen)" % uid)
                if st != "OK":
                    print("store failed: " + rest, file=sys.stderr)
        logout()
        return 0
    except socket.timeout:
        print("timeout: the server stopped answering", file=sys.stderr)
        try:
            sock.sendall(b"Z999 LOGOUT\r\n")
        except OSError:
            pass
        return 1
    except (Gone, OSError) as e:
        print("connection error: %s" % e, file=sys.stderr)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
