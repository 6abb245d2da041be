"""A correct imap-client in another style: LOGIN with synchronizing literals, SELECT always,
FETCH (UID BODY.PEEK[]), a regex over the response."""
import os
import re
import socket
import sys
import argparse


class Bye(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server"); ap.add_argument("--port", type=int); ap.add_argument("--user")
    ap.add_argument("--password"); ap.add_argument("--out"); ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--unseen-only", action="store_true"); ap.add_argument("--mark-seen", action="store_true")
    a = ap.parse_args()
    try:
        s = socket.create_connection((a.server, a.port), timeout=10)
    except OSError as e:
        print(e, file=sys.stderr); return 2
    buf = bytearray()

    def fill():
        d = s.recv(4096)
        if not d:
            raise Bye("server closed the connection")
        buf.extend(d)

    def readline():
        while b"\r\n" not in buf:
            fill()
        i = buf.index(b"\r\n")
        line = bytes(buf[:i]); del buf[:i + 2]
        return line

    def take(n):
        while len(buf) < n:
            fill()
        d = bytes(buf[:n]); del buf[:n]
        return d

    n = [0]

    def run(*parts):
        """parts: str pieces and bytes literals (sent as {n} after the server's '+')."""
        n[0] += 1
        tag = f"t{n[0]}"
        out = tag.encode()
        for p in parts:
            if isinstance(p, bytes):
                s.sendall(out + b" {%d}\r\n" % len(p))
                while True:
                    l = readline()
                    if l.startswith(b"+"):
                        break
                    if l.startswith(tag.encode() + b" "):
                        return l, []
                out = p
            else:
                out += b" " + p.encode()
        s.sendall(out + b"\r\n")
        resp = []
        while True:
            l = readline()
            lits = []
            while (m := re.search(rb"\{(\d+)\}$", l)):
                lits.append(take(int(m.group(1))))
                l = l + b"\r\n" + readline()
            if l.startswith(tag.encode() + b" "):
                return l, resp
            resp.append((l, lits))

    try:
        g = readline()
        if g.startswith(b"* BYE"):
            print(g.decode(), file=sys.stderr); return 2
        st, _ = run("LOGIN", a.user.encode(), a.password.encode())
        if b" OK" not in st:
            print(st.decode(), file=sys.stderr); run("LOGOUT"); return 1
        st, _ = run("SELECT", a.mailbox.encode())
        if b" OK" not in st:
            print(st.decode(), file=sys.stderr); run("LOGOUT"); return 1
        st, resp = run("UID SEARCH", "UNSEEN" if a.unseen_only else "ALL")
        uids = [u for l, _ in resp if l.startswith(b"* SEARCH") for u in l.split()[2:]]
        os.makedirs(a.out, exist_ok=True)
        for u in uids:
            st, resp = run("UID FETCH", u.decode(), "(UID BODY.PEEK[])")
            for l, lits in resp:
                if b"FETCH" in l and lits:
                    open(os.path.join(a.out, u.decode() + ".eml"), "wb").write(lits[0])
            if a.mark_seen:
                run("UID STORE", u.decode(), "+FLAGS.SILENT (\\Seen)")
        run("LOGOUT")
        return 0
    except (Bye, OSError) as e:
        print("error:", e, file=sys.stderr); return 1


sys.exit(main())
