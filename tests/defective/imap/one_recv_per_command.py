# DEFECTIVE on purpose (mutation test): must lose points on imap.whole-reply and nowhere else.
# Written apart from the reference solution, as a student would: one recv() per response.
import argparse, os, re, socket, sys
ap = argparse.ArgumentParser()
for o in ("--server","--user","--password","--out"): ap.add_argument(o)
ap.add_argument("--port", type=int); ap.add_argument("--mailbox", default="INBOX")
ap.add_argument("--unseen-only", action="store_true"); ap.add_argument("--mark-seen", action="store_true")
a = ap.parse_args()
try:
    s = socket.create_connection((a.server, a.port), timeout=10)
except OSError as e:
    print(e, file=sys.stderr); sys.exit(2)
n = 0
def cmd(c):
    global n
    n += 1
    s.sendall(f"a{n} {c}\r\n".encode())
    data = s.recv(1 << 20)   # the whole response, in one recv()...
    if not data:
        raise ConnectionError("closed")
    return data
try:
    g = s.recv(4096)
    if g.startswith(b"* BYE"): print("refused:", g.decode(errors="replace").strip(), file=sys.stderr); sys.exit(2)
    q = lambda x: '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    r = cmd(f"LOGIN {q(a.user)} {q(a.password)}")
    if b" OK" not in r.split(b"\r\n")[-2]:
        print(r.decode(), file=sys.stderr); cmd("LOGOUT"); sys.exit(1)
    r = cmd(f"{'SELECT' if a.mark_seen else 'EXAMINE'} {q(a.mailbox)}")
    if f"a{n} OK".encode() not in r:
        print(r.decode(), file=sys.stderr); cmd("LOGOUT"); sys.exit(1)
    r = cmd("UID SEARCH UNSEEN" if a.unseen_only else "UID SEARCH ALL")
    uids = re.search(rb"\* SEARCH([ 0-9]*)", r).group(1).split()
    os.makedirs(a.out, exist_ok=True)
    for u in uids:
        r = cmd(f"UID FETCH {u.decode()} BODY.PEEK[]")
        m = re.search(rb"\{(\d+)\}\r\n", r)
        open(os.path.join(a.out, u.decode() + ".eml"), "wb").write(r[m.end():m.end() + int(m.group(1))])
        if a.mark_seen: cmd(f"UID STORE {u.decode()} +FLAGS (\\Seen)")
    cmd("LOGOUT")
except (OSError, ConnectionError) as e:
    print(e, file=sys.stderr); sys.exit(1)
