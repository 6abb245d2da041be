"""Benchmark of the real command (run by hand, not a test): ``mailtrace lab`` as a user runs it.

    python tests/bench/bench_lab.py [--seconds 2] [--rounds 2] [--only smtp,pop3,imap,stop,proxy,show]
                                    [--sessions 1,10,100] [--clients 1,10,100] [--lab-arg=--quiet]

What runs, all started by this script on 127.0.0.1 (ports chosen by the kernel):

* ``python -m mailtrace lab --log DIR/t.jsonl`` with every port 0, its live view writing to a
  pseudo-terminal (drained by a thread here, as a terminal emulator would), fsync on, the lab
  directory on tmpfs (/dev/shm) when there is one;
* aiosmtpd with a ``mailbox.Maildir`` handler (``bench_smtp.py --serve aiosmtpd``), its own process;
* Dovecot (Debian's build, pop3 + imap) with a private configuration (``bench_pop3.Dovecot``),
  on a copy of the lab's Maildir tree (hard links to the same message files): one user per
  client, 100 messages of 10 KB each.

Loads, each measured in turns (mailtrace, peer, mailtrace, peer, ...; best of ``--rounds``):

* SMTP: N sessions sending 1 KB / 100 KB messages (MAIL, RCPT, DATA, body) -> messages/s
  answered 250, vs aiosmtpd;
* POP3: N clients, each session USER/PASS/STAT/RETR x100/QUIT -> sessions/s, vs Dovecot;
* IMAP: N clients, each session LOGIN/SELECT/UID FETCH 1:* BODY.PEEK[]/LOGOUT -> sessions/s;
* stop: a flood of 100 SMTP sessions, then SIGINT (Ctrl-C): seconds until the lab exits, and a
  check that the JSONL log has an open and a close for every session and a 250 for every
  message the clients saw accepted;
* proxy: round-trip latency (p50, p99) added by ``mailtrace proxy --log`` (live view on a
  pseudo-terminal) and by a trivial asyncio relay on the same event loop (uvloop, and asyncio's
  own), over the same line server;
* show: ``mailtrace show`` of a pcap (the command, output to /dev/null, and the import alone)
  vs scapy's ``rdpcap(file).sessions()``.

Each line prints the ratio, the server's CPU milliseconds per message or session (user +
system, threads and reaped children included), the CPU ratio (the peer's CPU per unit over
mailtrace's: above 1, mailtrace does the work with less CPU) and, per load, the peak RSS.  The machine's load average
is printed before and after: other work on the machine moves wall-clock rates, CPU per unit
much less.  The in-process benchmarks (bench_smtp.py, ...) stay as profiling aids.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_imap  # noqa: E402
import bench_pop3  # noqa: E402
import bench_smtp  # noqa: E402
from bench_pop3 import Dovecot, mail_owner, make_maildir_tree, tree_cpu_seconds  # noqa: E402

PY = sys.executable
PASSWORD = "benchpw"
SINK_USER = "sink"  # SMTP deliveries go here, away from the POP3/IMAP mailboxes


# --- process facts --------------------------------------------------------------------------------
def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of one process, MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def tree_rss_mb(pid: int) -> float:
    """Current resident set of a process and its descendants (Dovecot's many processes), MB."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    family, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in family} - family
        family |= more
        grew = bool(more)
    total = 0
    for p in family:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Drain(threading.Thread):
    """Reads a pseudo-terminal's master side (as a terminal emulator does) and counts the bytes."""

    def __init__(self, fd: int, until: bytes | None = None) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.until = until  # stop reading once this was seen (``to_cat`` takes over)
        self.octets = 0
        self.head = bytearray()  # the first bytes (the banner)
        self.tail = bytearray()  # the last bytes (the summary lines of a flood)
        self.seen = threading.Condition()

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except OSError:
                return
            if not data:
                return
            with self.seen:
                self.octets += len(data)
                if len(self.head) < 1 << 16:
                    self.head += data
                self.tail = (self.tail + data)[-(1 << 16):]
                self.seen.notify_all()
                if self.until is not None and self.until in self.head:
                    return

    def to_cat(self) -> subprocess.Popen:
        """Once ``until`` was seen: ``cat`` drains the terminal from now on, in a process of its
        own (as a terminal emulator is), so that it never takes this process's GIL from a
        latency measurement."""
        self.join()
        cat = subprocess.Popen(["cat"], stdin=self.fd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(self.fd)
        return cat

    def wait_for(self, pattern: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        with self.seen:
            while pattern not in self.head:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no {pattern!r} on the terminal: {bytes(self.head[-2000:])!r}")
                self.seen.wait(left)
            return bytes(self.head)


def on_pty(args: list[str], run_as: tuple[int, int] | None = None, cwd: Path | None = None, env_extra: dict | None = None,
           until: bytes | None = None) -> tuple[subprocess.Popen, Drain]:
    """Start a command with stdout and stderr on a new pseudo-terminal (120 x 40, TERM=xterm)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    env.update(env_extra or {})
    kw = {}
    if run_as is not None:
        kw = dict(user=run_as[0], group=run_as[1], extra_groups=[])
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd, **kw)
    os.close(slave)
    drain = Drain(master, until)
    drain.start()
    return proc, drain


# --- the servers -------------------------------------------------------------------------------------
class Lab:
    """``python -m mailtrace lab`` on a pseudo-terminal, every port 0."""

    def __init__(self, directory: Path, users: dict[str, str], extra: list[str], run_as) -> None:
        self.directory = directory
        self.log = directory / "t.jsonl"
        self.args = [PY, "-m", "mailtrace", "lab", "--dir", str(directory), "--log", str(self.log)]
        for opt in ("--smtp-port", "--pop3-port", "--imap-port", "--smtps-port", "--pop3s-port", "--imaps-port"):
            self.args += [opt, "0"]
        for user, password in users.items():
            self.args += ["--user", f"{user}:{password}"]
        self.args += extra
        self.run_as = run_as

    def start(self) -> "Lab":
        self.proc, self.drain = on_pty(self.args, self.run_as, cwd=self.directory)
        self.pid = self.proc.pid
        banner = self.drain.wait_for(b"Ctrl-C stops the lab").decode("utf-8", "replace")
        self.ports = {}
        for tls, proto, port in re.findall(r"(implicit-TLS )?(SMTP|POP3|IMAP) on 127\.0\.0\.1:(\d+)", banner):
            if not tls:
                self.ports[proto.lower()] = int(port)
        return self

    def stop(self, timeout: float = 20) -> float:
        """SIGINT (Ctrl-C), as a user stops it; seconds until it exited."""
        if self.proc.poll() is not None:
            return 0.0
        t = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        return time.monotonic() - t


class Aiosmtpd:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory

    def start(self) -> "Aiosmtpd":
        self.proc = subprocess.Popen([PY, str(HERE / "bench_smtp.py"), "--serve", "aiosmtpd", str(self.directory)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # (its log)
        self.pid = self.proc.pid
        self.ports = {"smtp": int(self.proc.stdout.readline())}
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- one measurement -----------------------------------------------------------------------------------
def smtp_load(port: int, sessions: int, size: int, seconds: float) -> tuple[float, int]:
    body = bench_smtp.make_body(size).replace(b"bob@lab.test", f"{SINK_USER}@lab.test".encode())
    counter = [0]

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(smtp_session(port, body, start + seconds, counter) for _ in range(sessions)))
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    return counter[0] / elapsed, counter[0]


async def smtp_session(port: int, body: bytes, stop_at: float, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("server closed")
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.client\r\n")
    await reply()
    rcpt = f"RCPT TO:<{SINK_USER}@lab.test>\r\n".encode()
    while time.monotonic() < stop_at:
        for cmd in (b"MAIL FROM:<bench@client.test>\r\n", rcpt, b"DATA\r\n"):
            writer.write(cmd)
            await reply()
        writer.write(body)
        if (await reply()).startswith(b"250"):
            counter[0] += 1
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


def session_load(module, port: int, users: list[str], clients: int, seconds: float) -> tuple[float, int]:
    start = time.monotonic()
    done, errors, _ = asyncio.run(module.run_load(port, users, PASSWORD, clients, seconds))
    if errors:
        print(f"    {errors} failed sessions", file=sys.stderr)
    return done / (time.monotonic() - start), done


def measure(server, fn) -> tuple[float, float]:
    """(rate, server CPU ms per unit) of one run of ``fn() -> (rate, units)``."""
    cpu0 = tree_cpu_seconds(server.pid)
    rate, units = fn()
    cpu = tree_cpu_seconds(server.pid) - cpu0
    return rate, (cpu * 1000 / units if units else float("inf"))


def compare(title: str, unit: str, pairs: list[tuple[str, object]], points: list, run, rounds: int) -> list[tuple]:
    """Measure every point on each server in turns; print one line per point; return the rows."""
    print(f"\n{title}")
    names = [name for name, _ in pairs]
    print(f"{'point':>14} " + " ".join(f"{n + ' ' + unit:>20}" for n in names) + f" {'ratio':>6}   "
          + " ".join(f"{n + ' CPU ms':>18}" for n in names) + f" {'CPU ratio':>9}")
    rows = []
    for point in points:
        best = {n: 0.0 for n in names}
        cpu = {n: float("inf") for n in names}
        for _ in range(rounds):
            for name, server in pairs:
                rate, ms = measure(server, lambda: run(server, point))
                best[name] = max(best[name], rate)
                cpu[name] = min(cpu[name], ms)
        ratio = best[names[0]] / best[names[1]] if best[names[1]] else float("inf")
        cpu_ratio = cpu[names[1]] / cpu[names[0]] if cpu[names[0]] else float("inf")
        print(f"{str(point):>14} " + " ".join(f"{best[n]:>20.1f}" for n in names) + f" {ratio:>5.2f}x   "
              + " ".join(f"{cpu[n]:>18.2f}" for n in names) + f" {cpu_ratio:>8.2f}x", flush=True)
        rows.append((point, best, cpu, ratio))
    return rows


# --- stop under a flood ---------------------------------------------------------------------------------
def stop_under_flood(lab: Lab, seconds: float) -> None:
    """100 SMTP sessions flood the lab; SIGINT mid-flood; time to exit; the log has every event."""
    import json

    counter = [0]
    body = bench_smtp.make_body(1024).replace(b"bob@lab.test", f"{SINK_USER}@lab.test".encode())
    result: dict = {}

    def flood() -> None:
        async def run() -> None:
            stop_at = time.monotonic() + 3600
            tasks = [asyncio.ensure_future(smtp_session(lab.ports["smtp"], body, stop_at, counter)) for _ in range(100)]
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(run())

    before_250 = count_log(lab.log)[2]
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    time.sleep(seconds)  # the flood runs (a benchmark, not a test: a plain wait is the point)
    accepted = counter[0]
    result["exit"] = lab.stop()
    thread.join(30)
    accepted_final = counter[0]
    opens, closes, replies_250 = count_log(lab.log)
    print(f"\nCtrl-C during a flood of 100 SMTP sessions ({accepted} messages accepted in {seconds:g} s):")
    print(f"  the lab exited {result['exit']:.2f} s after SIGINT (goal < 2 s); the terminal got "
          f"{lab.drain.octets / 1e6:.1f} MB in all")
    summaries = [line for line in bytes(lab.drain.tail).decode("utf-8", "replace").splitlines() if "not shown" in line]
    if summaries:
        last = re.sub(r"\x1b\[[0-9;]*m", "", summaries[-1]).strip()
        print(f"  the live view's last summary line: {last}")
    got = replies_250 - before_250
    print(f"  JSONL log: {opens} sessions opened, {closes} closed; {got} DATA 250 replies logged for "
          f"{accepted_final} the clients saw -> {'complete' if opens == closes and got >= accepted_final else 'MISSING EVENTS'}")
    del json


def count_log(path: Path) -> tuple[int, int, int]:
    import json

    opens = closes = ok = 0
    if not path.exists():
        return 0, 0, 0
    with open(path, encoding="utf-8") as f:
        next(f, None)
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            kind = e.get("kind")
            if kind == "open":
                opens += 1
            elif kind == "close":
                closes += 1
            elif kind == "reply" and e.get("code") == "250" and e.get("protocol") == "smtp" \
                    and "queued as" in e.get("raw", ""):
                ok += 1
    return opens, closes, ok


# --- proxy latency -----------------------------------------------------------------------------------------
def latencies(ports: list[int], n: int, seed: int = 0) -> dict[int, list[float]]:
    """``n`` NOOP round trips on a connection to each port, taken in turns one trip at a time:
    a burst of other work on the (shared) machine then hits every path alike, not whichever
    path was being measured at that moment.  The order of the turn is shuffled every time: the
    processes of one path still finish their work (the relay's return to its loop, the server's
    next read) while the next path's trip starts, on a machine with few cores, so a fixed order
    gave each path the same predecessor and a bias of its own (measured: the same trivial relay,
    started twice, added 30 us second in the turn and 40 us fourth)."""
    import random

    order = random.Random(seed)
    conns = {}
    try:
        for port in ports:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            f.readline()
            conns[port] = (s, f)
        for _ in range(50):  # warm up
            for s, f in conns.values():
                s.sendall(b"NOOP\r\n")
                f.readline()
        out: dict[int, list[float]] = {port: [] for port in ports}
        clock = time.perf_counter
        turn = list(conns.items())
        for _ in range(n):
            order.shuffle(turn)
            for port, (s, f) in turn:
                t = clock()
                s.sendall(b"NOOP\r\n")
                f.readline()
                out[port].append(clock() - t)
        for s, f in conns.values():
            s.sendall(b"QUIT\r\n")
            f.readline()
    finally:
        for s, f in conns.values():
            f.close()
            s.close()
    return out


def proxy_bench(tmp: Path, n: int, runs: int) -> None:
    """Each ``mailtrace proxy --log`` against a trivial asyncio relay on the same event loop: the
    proxy runs on uvloop when it is installed (``MAILTRACE_LOOP=asyncio``: asyncio's loop), and a
    relay on asyncio's loop moves bytes slower than the same relay on uvloop, so each proxy is
    compared with the relay on its own loop."""
    from bench_proxy import RELAY, SERVER, spawn

    try:
        import uvloop  # noqa: F401
        loops = ["uvloop", "asyncio"]
    except ImportError:
        loops = ["asyncio"]
    procs = []
    try:
        server, sport = spawn([PY, "-c", SERVER])
        procs.append(server)
        relays, proxies = {}, {}
        for loop in loops:
            relay, relays[loop] = spawn([PY, "-c", RELAY, str(sport), loop])
            procs.append(relay)
            proxy, drain = on_pty([PY, "-m", "mailtrace", "proxy", "--listen", "127.0.0.1:0", "--to",
                                   f"127.0.0.1:{sport}", "--protocol", "smtp", "--log", str(tmp / f"proxy-{loop}.jsonl")],
                                  env_extra={"MAILTRACE_LOOP": loop}, until=b"Ctrl+C")
            procs.append(proxy)
            head = drain.wait_for(b"Ctrl+C").decode("utf-8", "replace")
            procs.append(drain.to_cat())
            proxies[loop] = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", head).group(1))
        paths = [("direct", sport)]
        for loop in loops:
            paths += [(f"trivial relay ({loop})", relays[loop]), (f"mailtrace proxy --log ({loop})", proxies[loop])]
        times: dict[int, list[float]] = {port: [] for _, port in paths}
        for run in range(runs):
            for port, xs in latencies(list(times), n, seed=run).items():
                times[port] += xs

        def pct(xs: list[float], q: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(q * len(xs)))]

        print(f"\nproxy latency: {runs} x {n} round trips on each path, taken in turns trip by trip, in a shuffled order "
              f"(microseconds); the proxies' live views on pseudo-terminals drained by cat")
        print(f"{'path':>34} {'p50':>8} {'p99':>8} {'added p50':>10} {'added p99':>10}")
        direct = times[sport]
        for name, port in paths:
            xs = times[port]
            print(f"{name:>34} {pct(xs, .5) * 1e6:8.1f} {pct(xs, .99) * 1e6:8.1f} "
                  f"{(pct(xs, .5) - pct(direct, .5)) * 1e6:10.1f} {(pct(xs, .99) - pct(direct, .99)) * 1e6:10.1f}")
        for loop in loops:
            for q, label in ((.5, "p50"), (.99, "p99")):
                added_relay = pct(times[relays[loop]], q) - pct(direct, q)
                added_proxy = pct(times[proxies[loop]], q) - pct(direct, q)
                ratio = added_proxy / added_relay if added_relay > 0 else float("inf")
                print(f"  on {loop}: added latency {label}, proxy / relay = {ratio:.2f} (goal <= 1.2)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)


# --- show -----------------------------------------------------------------------------------------------------
_TIMED_IMPORT = """
import sys, time
path, how = sys.argv[1], sys.argv[2]
if how == "scapy":
    from scapy.all import rdpcap
    run = lambda: rdpcap(path).sessions()
else:
    from mailtrace.capture.importer import import_capture
    from mailtrace.transcript.recorder import Recorder
    run = lambda: import_capture(path, Recorder([]))
wall, cpu = time.perf_counter(), time.process_time()
run()
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def timed_import(path: Path, how: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one import in a fresh interpreter (imports loaded, not timed): this
    process's own heap (the capture's writer, the proxies' measurements) would slow the collector."""
    out = subprocess.run([PY, "-c", _TIMED_IMPORT, str(path), how], capture_output=True, text=True, check=True).stdout
    wall, cpu = out.split()
    return float(wall), float(cpu)


def show_bench(tmp: Path, sessions: int, rounds: int = 2) -> None:
    from bench_pcap import make_capture

    path = tmp / "big.pcap"
    make_capture(str(path), sessions)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):  # in turns; the best of each
        for how in ("scapy", "mailtrace"):
            wall, cpu = timed_import(path, how)
            old = best.get(how, (float("inf"), float("inf")))
            best[how] = (min(old[0], wall), min(old[1], cpu))
    t = time.perf_counter()
    subprocess.run([PY, "-m", "mailtrace", "show", str(path)], stdout=subprocess.DEVNULL, check=True)
    t_cmd = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([PY, "-m", "mailtrace", "show", str(path), "--format", "jsonl", "-o", str(tmp / "show.jsonl")],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_jsonl = time.perf_counter() - t
    (s_wall, s_cpu), (m_wall, m_cpu) = best["scapy"], best["mailtrace"]
    print(f"\nshow: a capture of {sessions} SMTP sessions ({path.stat().st_size / 1e6:.1f} MB); each import in a fresh "
          f"interpreter, best of {rounds} in turns (wall s / CPU s)")
    print(f"  scapy rdpcap + sessions():               {s_wall:6.2f} / {s_cpu:6.2f}")
    print(f"  import_capture (observers, recorder):    {m_wall:6.2f} / {m_cpu:6.2f}  -> {s_wall / m_wall:5.1f}x scapy wall, "
          f"{s_cpu / m_cpu:5.1f}x CPU (goal >= 10x)")
    print(f"  `mailtrace show FILE > /dev/null`:       {t_cmd:6.2f}  -> {s_wall / t_cmd:5.1f}x scapy "
          "(includes rendering every line and the interpreter's start)")
    print(f"  `mailtrace show FILE --format jsonl`:    {t_jsonl:6.2f}  -> {s_wall / t_jsonl:5.1f}x scapy")


# --- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="smtp,pop3,imap,stop,proxy,show")
    ap.add_argument("--sessions", default="1,10,100", help="SMTP sessions")
    ap.add_argument("--sizes", default="1024,102400", help="SMTP message sizes")
    ap.add_argument("--clients", default="1,10,100", help="POP3 / IMAP clients")
    ap.add_argument("--lab-arg", action="append", default=[], help="an extra option for `mailtrace lab` (e.g. --quiet)")
    ap.add_argument("--proxy-trips", type=int, default=2000)
    ap.add_argument("--proxy-runs", type=int, default=5, help="runs of --proxy-trips round trips per path (p99 of all)")
    ap.add_argument("--pcap-sessions", type=int, default=2000)
    args = ap.parse_args()
    only = set(args.only.split(","))
    sessions = [int(x) for x in args.sessions.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    clients = [int(x) for x in args.clients.split(",")]
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    print(f"bench_lab: {os.cpu_count()} CPUs, load average {load_average()} (1, 5, 15 min) at the start; "
          f"store on {'tmpfs ' + base if base else 'the default temporary directory (no tmpfs)'}; "
          f"`mailtrace lab --log` {' '.join(args.lab_arg)} live view on a pseudo-terminal, fsync on")
    with tempfile.TemporaryDirectory(prefix="bench-lab-", dir=base) as tmpname:
        tmp = Path(tmpname)
        tmp.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the passwd file
        users = {f"user{k}": PASSWORD for k in range(max(clients))}
        lab_dir = tmp / "lab"
        # Two trees of the same messages, one per server: each keeps its own uidlists and index
        # files, with the owner it needs (Dovecot's mail processes never run as root).
        make_maildir_tree(lab_dir / "mail", list(users))
        dove_mail = tmp / "dovecot-tree" / "mail"
        make_maildir_tree(dove_mail, list(users))
        if os.geteuid() == 0:
            uid, gid = mail_owner()
            subprocess.run(["chown", "-R", f"{uid}:{gid}", str(dove_mail.parent)], check=True)
        lab = Lab(lab_dir, {SINK_USER: PASSWORD, **users}, args.lab_arg, None).start()
        servers: list = [lab]
        try:
            if only & {"smtp"}:
                smtpd = Aiosmtpd(tmp / "aiosmtpd").start()
                servers.append(smtpd)
                points = [(n, size) for size in sizes for n in sessions]
                compare("SMTP: messages/s (sessions, size)", "msg/s", [("mailtrace", lab), ("aiosmtpd", smtpd)],
                        points, lambda s, p: smtp_load(s.ports["smtp"], p[0], p[1], args.seconds), args.rounds)
                print(f"  peak RSS: mailtrace lab {peak_rss_mb(lab.pid):.0f} MB, aiosmtpd {peak_rss_mb(smtpd.pid):.0f} MB")
            if only & {"pop3", "imap"}:
                if not shutil.which("dovecot"):
                    print("\nPOP3/IMAP: dovecot is not installed (Debian: dovecot-pop3d dovecot-imapd): skipped")
                else:
                    protos = tuple(p for p in ("pop3", "imap") if p in only)
                    dovecot = Dovecot(tmp / "dovecot", dove_mail, users, protocols=protos).start()
                    servers.append(dovecot)
                    dovecot_rss = 0.0
                    for proto, module in (("pop3", bench_pop3), ("imap", bench_imap)):
                        if proto not in protos:
                            continue
                        for s in (lab, dovecot):  # warm up (first scan of every mailbox, uidlists)
                            session_load(module, s.ports[proto], list(users), max(clients), 1.0)
                        compare(f"{proto.upper()}: sessions/s (clients)", "sess/s", [("mailtrace", lab), ("dovecot", dovecot)],
                                clients, lambda s, c, proto=proto, module=module:
                                session_load(module, s.ports[proto], list(users), c, args.seconds), args.rounds)
                        dovecot_rss = max(dovecot_rss, tree_rss_mb(dovecot.pid))
                        print(f"  peak RSS of mailtrace lab so far: {peak_rss_mb(lab.pid):.0f} MB (now "
                              f"{tree_rss_mb(lab.pid):.0f} MB)", flush=True)
                    print(f"  peak RSS: mailtrace lab {peak_rss_mb(lab.pid):.0f} MB; Dovecot (all processes, "
                          f"at the end) {dovecot_rss:.0f} MB")
            if "stop" in only:
                stop_under_flood(lab, max(args.seconds, 2.0))
        finally:
            for s in servers:
                s.stop()
        if "proxy" in only:
            proxy_bench(tmp, args.proxy_trips, args.proxy_runs)
        if "show" in only:
            show_bench(tmp, args.pcap_sessions)
    print(f"\nload average at the end: {load_average()} (1, 5, 15 min)")


if __name__ == "__main__":
    main()
