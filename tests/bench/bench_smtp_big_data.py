"""Benchmark (run by hand, not a test): the SMTP lab server's memory under big parallel DATA.

    python tests/bench/bench_smtp_big_data.py [--clients 8] [--mb 50]

Starts the lab's SMTP server (the real asyncio shell and core, a fsync'ing Maildir store, the
message size limit raised to fit) in a child process on an ephemeral loopback port, twice:
once as it is (a message past smtp.delivery.SPOOL_THRESHOLD goes to tmp/ as it arrives) and
once with spooling switched off (the whole message held in memory until the final dot), the
peer measured in the same run.  Each time N raw-socket clients send an M MB message at once
(the clients stream their bodies: they hold one 64 KiB block each) and the server's resident
memory is printed: idle, peak (VmHWM) and after the sessions, with the ratio of the peaks,
and the server's CPU time for the sessions (user + system, per MB received: a profile aid).
Numbers go in the issue's closing note; no assertion here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1024 * 1024


def status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve(directory: str, port_file: str, spool: bool, limit: int) -> None:
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.lab import Lab
    from mailtrace.servers.smtp import make_core_factory

    if not spool:  # the peer: every message held in memory until the final dot
        import mailtrace.protocols.smtp.server as core

        core.SPOOL_THRESHOLD = 1 << 62
    lab = Lab(directory=Path(directory))
    listener = Listener(ListenerConfig("smtp"), make_core_factory(lab, max_message_size=limit), lab.recorder)
    await listener.start()
    Path(port_file).write_text(str(listener.port))
    await asyncio.Event().wait()


def reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        data += sock.recv(4096)
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(x) > 3 and x[3:4] == b" " for x in lines[:-1]):
            return data


def send_one(port: int, n: int, size: int, codes: list) -> None:
    block = (f"line {n} ".encode() + b"x" * 70 + b"\r\n") * 800  # ~64 KiB of message lines
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reply(sock)
        for line in (b"EHLO bench.example", b"MAIL FROM:<bench@example.org>", b"RCPT TO:<bob@lab.test>", b"DATA"):
            sock.sendall(line + b"\r\n")
            reply(sock)
        sock.sendall(f"Subject: big {n}\r\n\r\n".encode())
        for _ in range(size // len(block)):
            sock.sendall(block)
        sock.sendall(b".\r\n")
        codes.append(reply(sock)[:3].decode())
        sock.sendall(b"QUIT\r\n")
        reply(sock)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(clients: int, size: int, spool: bool) -> tuple[float, float, float, list, float]:
    with tempfile.TemporaryDirectory() as d:
        port_file = os.path.join(d, "port")
        child = subprocess.Popen([sys.executable, __file__, "--serve", d, port_file, "1" if spool else "0",
                                  str(size + 8 * MB)])
        try:
            for _ in range(300):
                if os.path.exists(port_file) and Path(port_file).read_text():
                    break
                time.sleep(0.05)
            port = int(Path(port_file).read_text())
            idle = status_mb(child.pid, "VmRSS")
            cpu = cpu_seconds(child.pid)
            codes: list = []
            threads = [threading.Thread(target=send_one, args=(port, n, size, codes)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu = cpu_seconds(child.pid) - cpu
            return idle, status_mb(child.pid, "VmHWM"), status_mb(child.pid, "VmRSS"), codes, cpu
        finally:
            child.terminate()
            child.wait(10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(serve(sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--mb", type=int, default=50)
    args = ap.parse_args()
    size = args.mb * MB
    results = {}
    for spool in (True, False):
        idle, peak, after, codes, cpu = measure(args.clients, size, spool)
        results[spool] = peak
        name = "spooled to tmp/ " if spool else "held in memory  "
        print(f"{name} {args.clients} x {args.mb} MB DATA: RSS idle {idle:.0f} MB, peak {peak:.0f} MB, "
              f"after {after:.0f} MB; replies {sorted(codes)}; server CPU {cpu:.2f} s "
              f"({1000 * cpu / (args.clients * args.mb):.1f} ms per MB)")
    print(f"peak RSS, spooled / in memory: {results[True] / results[False]:.2f}")


if __name__ == "__main__":
    main()
