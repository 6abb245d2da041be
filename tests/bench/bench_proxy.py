"""Benchmark (run by hand, not a test): the proxy's added latency per round trip.

    .venv/bin/python tests/bench/bench_proxy.py [ROUND_TRIPS]

A line server (its own process) answers every "NOOP" line with "250 OK".  The client (this
process) does ROUND_TRIPS request/answer round trips, one at a time, straight to the server,
through a trivial asyncio byte relay (its own process, on uvloop when it is installed, as the proxy), and through ``mailtrace proxy`` (its
own process: quiet, and with --log to a file).  Added latency = through - direct.
Target (issue 4): the proxy's added latency <= 1.2x the trivial relay's.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

PY = sys.executable
SERVER = textwrap.dedent("""
    import asyncio, sys
    async def handle(r, w):
        w.write(b"220 bench ready\\r\\n")
        while True:
            line = await r.readline()
            if not line:
                break
            w.write(b"221 bye\\r\\n" if line.startswith(b"QUIT") else b"250 OK\\r\\n")
            await w.drain()
        w.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()
    asyncio.run(main())
""")
RELAY = textwrap.dedent("""
    import asyncio, sys
    UP = int(sys.argv[1])
    async def pump(r, w):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()
    async def handle(r, w):
        ur, uw = await asyncio.open_connection("127.0.0.1", UP)
        await asyncio.gather(pump(r, uw), pump(ur, w))
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":  # the loop mailtrace runs on when uvloop is installed
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
""")


def spawn(args: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    port = int(line.split("127.0.0.1:")[1].split()[0]) if "listening" in line else int(line)
    return proc, port


def round_trips(port: int, n: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        f.readline()
        for _ in range(50):  # warm up
            s.sendall(b"NOOP\r\n")
            f.readline()
        t = time.perf_counter()
        for _ in range(n):
            s.sendall(b"NOOP\r\n")
            f.readline()
        elapsed = time.perf_counter() - t
        s.sendall(b"QUIT\r\n")
        f.readline()
        f.close()
    return elapsed / n


RUNS = 5


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    procs = []
    try:
        server, sport = spawn([PY, "-c", SERVER])
        procs.append(server)
        try:  # the relay on the loop mailtrace runs on (uvloop when installed: mailtrace/servers/loop.py)
            import uvloop  # noqa: F401
            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
        relay, rport = spawn([PY, "-c", RELAY, str(sport), loop])
        procs.append(relay)
        mailtrace = [PY, "-m", "mailtrace", "proxy", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{sport}",
                     "--protocol", "smtp"]
        proxy, pport = spawn(mailtrace + ["--quiet"])
        procs.append(proxy)
        log = os.path.join(tempfile.mkdtemp(), "bench.jsonl")
        proxy_log, lport = spawn(mailtrace + ["--quiet", "--log", log])
        procs.append(proxy_log)
        best = {p: float("inf") for p in (sport, rport, pport, lport)}
        for _ in range(RUNS):  # interleaved, so a busy moment hurts every path alike
            for port in best:
                best[port] = min(best[port], round_trips(port, n))
        direct, via_relay, via_proxy, via_log = (best[p] for p in (sport, rport, pport, lport))
        print(f"{n} round trips each, best of {RUNS} interleaved runs (microseconds per round trip)")
        print(f"direct:                    {direct * 1e6:8.1f}")
        print(f"trivial relay:             {via_relay * 1e6:8.1f}  (+{(via_relay - direct) * 1e6:.1f})")
        print(f"mailtrace proxy --quiet:   {via_proxy * 1e6:8.1f}  (+{(via_proxy - direct) * 1e6:.1f})")
        print(f"mailtrace proxy --log:     {via_log * 1e6:8.1f}  (+{(via_log - direct) * 1e6:.1f})")
        print(f"round trip through proxy / through relay: {via_proxy / via_relay:.2f} (--log: {via_log / via_relay:.2f})")
        print(f"added latency, proxy / relay: {(via_proxy - direct) / (via_relay - direct):.2f} "
              f"(--log: {(via_log - direct) / (via_relay - direct):.2f}); target <= 1.2")
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)


if __name__ == "__main__":
    main()
