"""Benchmark (run by hand, not a test): a command sent in two writes, as some client libraries do.

    python tests/bench/bench_imap_two_writes.py [--commands 100] [--only mailtrace|dovecot]

The client (this process, Nagle's algorithm on, as in those libraries) logs in, selects INBOX
(10 messages) and then sends each ``SEARCH ALL`` as two ``send()`` calls: the command line,
then its CRLF.  With Nagle on, the second write waits for the server's ACK of the first; a
server that leaves that ACK to the kernel's delayed-ACK timer answers about 40 ms late
(issue 20).  Printed: the median round trip (milliseconds) against mailtrace's lab server,
Dovecot's imap, and ``mailtrace proxy`` in front of each, all started here on 127.0.0.1 ports
chosen by the kernel; the same command sent in one write as the reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_imap import Mailtrace  # noqa: E402
from bench_pop3 import Dovecot, mail_owner, make_maildir_tree  # noqa: E402

USER, PASSWORD = "user0", "benchpw"


def _until(f, tag: bytes) -> bytes:
    while True:
        line = f.readline()
        if not line:
            raise SystemExit(f"connection closed while waiting for {tag!r}")
        if line.startswith(tag + b" "):
            return line


def medians(port: int, commands: int) -> tuple[float, float]:
    """(median ms in two writes, median ms in one write) of SEARCH ALL."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # Nagle on, as the libraries leave it
        f = s.makefile("rb")
        f.readline()
        s.sendall(f"l LOGIN {USER} {PASSWORD}\r\ns SELECT INBOX\r\n".encode())
        for tag in (b"l", b"s"):
            reply = _until(f, tag)
            if not reply.startswith(tag + b" OK"):
                raise SystemExit(f"set-up failed: {reply!r}")
        split, whole = [], []
        for i in range(commands):
            tag = b"t%d" % i
            t = time.perf_counter()
            s.send(tag + b" SEARCH ALL")
            s.send(b"\r\n")
            reply = _until(f, tag)
            if not reply.startswith(tag + b" OK"):
                raise SystemExit(f"SEARCH failed: {reply!r}")
            split.append(time.perf_counter() - t)
            tag = b"w%d" % i
            t = time.perf_counter()
            s.send(tag + b" SEARCH ALL\r\n")
            _until(f, tag)
            whole.append(time.perf_counter() - t)
        s.sendall(b"z LOGOUT\r\n")
        _until(f, b"z")
    return statistics.median(split) * 1e3, statistics.median(whole) * 1e3


def proxy(port: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "proxy", "--listen", "127.0.0.1:0", "--to",
                             f"127.0.0.1:{port}", "--protocol", "imap", "--quiet"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, int(line.split("127.0.0.1:")[1].split()[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--only", choices=["mailtrace", "dovecot"])
    args = parser.parse_args(argv)
    want_dovecot = args.only != "mailtrace"
    if want_dovecot and not shutil.which("dovecot"):
        print("dovecot is not installed (Debian: dovecot-imapd): measuring mailtrace only", file=sys.stderr)
        want_dovecot = False
    users = {USER: PASSWORD}
    procs: list[subprocess.Popen] = []
    servers = {}
    with tempfile.TemporaryDirectory(prefix="bench-two-writes-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # Dovecot's auth process reads the passwd file below
        make_maildir_tree(root / "lab" / "mail", list(users), messages=10, size=2000)
        if os.geteuid() == 0:
            uid, gid = mail_owner()
            subprocess.run(["chown", "-R", f"{uid}:{gid}", str(root / "lab")], check=True)
        try:
            if args.only != "dovecot":
                servers["mailtrace"] = Mailtrace(root / "lab", users).start()
            if want_dovecot:
                servers["dovecot"] = Dovecot(root / "dovecot", root / "lab" / "mail", users, protocols=("imap",))
                servers["dovecot"].start()
            ports = {}
            for name, server in servers.items():
                ports[name] = server.ports["imap"]
                proc, port = proxy(server.ports["imap"])
                procs.append(proc)
                ports[f"proxy -> {name}"] = port
            print(f"SEARCH ALL, {args.commands} commands each: median round trip in ms")
            print(f"{'server':<22}{'two writes':>12}{'one write':>12}")
            for name, port in ports.items():
                split, whole = medians(port, args.commands)
                print(f"{name:<22}{split:>12.2f}{whole:>12.2f}")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
