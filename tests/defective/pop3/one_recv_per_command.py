# DEFECTIVE on purpose (mutation test): must lose points on pop3.whole-reply and nowhere else.
# Written apart from the reference solution, as a student would: one recv() per response.
import argparse, os, socket, sys
ap = argparse.ArgumentParser()
for o in ("--server","--user","--password","--out"): ap.add_argument(o)
ap.add_argument("--port", type=int); ap.add_argument("--delete", action="store_true")
a = ap.parse_args()
try:
    s = socket.create_connection((a.server, a.port), timeout=10)
except OSError as e:
    print(e, file=sys.stderr); sys.exit(2)
def cmd(c):
    s.sendall(c.encode() + b"\r\n")
    d = s.recv(65536)       # one recv() = the whole response...
    if not d: raise ConnectionError("closed")
    return d
try:
    g = s.recv(1024)
    if not g.startswith(b"+OK"): print("refused:", g.decode(errors="replace").strip(), file=sys.stderr); sys.exit(2)
    for c in ("USER " + a.user, "PASS " + a.password):
        r = cmd(c)
        if r.startswith(b"-ERR"):
            print(r.decode(), file=sys.stderr); cmd("QUIT"); sys.exit(1)
    count = int(cmd("STAT").split()[1])
    os.makedirs(a.out, exist_ok=True)
    for i in range(1, count + 1):
        r = cmd(f"RETR {i}")
        body = r.split(b"\r\n", 1)[1]
        if body.endswith(b"\r\n.\r\n"): body = body[:-3]
        lines = body.split(b"\r\n")
        open(os.path.join(a.out, f"{i}.eml"), "wb").write(b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines))
        if a.delete: cmd(f"DELE {i}")
    cmd("QUIT")
except (OSError, ConnectionError) as e:
    print(e, file=sys.stderr); sys.exit(1)
