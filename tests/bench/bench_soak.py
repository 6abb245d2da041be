"""Soak benchmark of the lab servers (issue #11): does one lab hold up for a whole class?

Starts ``python -m mailtrace lab`` (live terminal view on, as in class; its output drained)
on ephemeral loopback ports, then runs each attack while a well-behaved client keeps doing
whole sessions (SMTP send, POP3 STAT, IMAP SELECT) and prints, per phase, that client's
latency (median and worst) and the ratio to the same sessions measured on the idle server in
the same run, and the server's resident memory (peak during the phase, and after it):

  flood      one client per protocol pipelines 100,000 commands in one write
  fuzz       40 clients per protocol sending random bytes
  slowloris  500 sockets that send one byte now and then
  idle       200 IMAP sessions in IDLE
  literal    4 unauthenticated "LOGIN {67108864+}" sending 50 MB each
  append     8 authenticated 50 MB APPENDs in parallel
  peer       the fuzz phase on SMTP alone, against mailtrace and against aiosmtpd (a Maildir
             handler) in turns: the ratio of the new SMTP client's latency, both servers under
             the same attack on the same machine at the same time (other load on the machine
             moves both)

    python tests/bench/bench_soak.py [--quick]     (--quick: smaller numbers, ~1 minute)

Numbers go in the issue's closing note; no assertion here (speed is not a test).
"""

from __future__ import annotations

import argparse
import imaplib
import multiprocessing
import os
import poplib
import random
import re
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Lab:
    def __init__(self, directory: str, quiet: bool, profile: str = "") -> None:
        # --profile FILE: the lab runs under cProfile (its event-loop thread), stats saved at exit
        python = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else [])]
        self.proc = subprocess.Popen(
            [*python, "-m", "mailtrace", "lab", "--dir", directory, "--no-tls", "--smtp-port", "0",
             "--pop3-port", "0", "--imap-port", "0",
             "--log", os.path.join(directory, "log.jsonl"), *(["--quiet"] if quiet else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        first = self.proc.stdout.readline().decode()
        self.ports = {m.group(1).lower(): int(m.group(2)) for m in re.finditer(r"(SMTP|POP3|IMAP) on [^,]*:(\d+)", first)}
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> float:
        t = time.monotonic()
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return float("inf")
        return time.monotonic() - t


def session(lab: Lab, protocol: str) -> float:
    t = time.monotonic()
    port = lab.ports[protocol]
    if protocol == "smtp":
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
            s.sendmail("carol@lab.test", ["bob@lab.test"], b"Subject: soak\r\n\r\nhello\r\n")
    elif protocol == "pop3":
        p = poplib.POP3("127.0.0.1", port, timeout=120)
        p.user("bob")
        p.pass_("bob")
        p.stat()
        p.quit()
    else:
        with imaplib.IMAP4("127.0.0.1", port, timeout=120) as i:
            i.login("bob", "bob")
            i.select("INBOX")
            i.logout()
    return (time.monotonic() - t) * 1000


FAILED: list[str] = []  # sessions that failed during a phase (busy reply, timeout)


def probe(lab: Lab, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        for protocol in ("smtp", "pop3", "imap"):
            try:
                out.append(session(lab, protocol))
            except (OSError, EOFError, smtplib.SMTPException, poplib.error_proto, imaplib.IMAP4.error) as exc:
                FAILED.append(f"{protocol}: {type(exc).__name__}: {str(exc)[:80]}")
    return out or [float("nan")]


@contextmanager
def sampling(lab: Lab):
    """Yields [peak RSS MB, server CPU share during the block (1.0: one core busy)]."""
    peak = [lab.rss(), 0.0]
    cpu0, t0 = cpu_seconds(lab.proc.pid), time.monotonic()
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            try:
                peak[0] = max(peak[0], lab.rss())
            except OSError:
                return

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield peak
    finally:
        peak[1] = (cpu_seconds(lab.proc.pid) - cpu0) / max(time.monotonic() - t0, 1e-6)
        stop.set()
        t.join()


def report(name: str, lab: Lab, times: list[float], baseline: float, peak: float, cpu: float = float("nan")) -> None:
    med = statistics.median(times)
    failed = f"   {len(FAILED)} failed: {FAILED[0]}" if FAILED else ""
    print(f"{name:10s} new-client session: median {med:7.1f} ms  worst {max(times):8.1f} ms  "
          f"(x{med / baseline:5.1f} idle)  server CPU {cpu:4.0%}  RSS peak {peak:6.1f} MB  after {lab.rss():6.1f} MB{failed}", flush=True)
    FAILED.clear()


def drain(sock: socket.socket) -> None:
    """Read and drop everything ``sock`` receives, until it is closed or reset."""
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def flood(ports: dict, n: int, stop) -> None:
    socks = []
    for protocol, cmd in (("smtp", b"NOOP\r\n"), ("pop3", b"NOOP\r\n"), ("imap", b"a NOOP\r\n")):
        s = socket.create_connection(("127.0.0.1", ports[protocol]))
        s.recv(1000)
        threading.Thread(target=lambda s=s, c=cmd: s.sendall(c * n), daemon=True).start()
        threading.Thread(target=drain, args=(s,), daemon=True).start()
        socks.append(s)
    stop.wait()


def fuzz(ports: dict, clients: int, stop) -> None:
    def one(port: int, seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    for _ in range(rnd.randint(1, 20)):
                        s.sendall(os.urandom(rnd.randint(1, 400)) + rnd.choice([b"\r\n", b"\n", b""]))
                    s.settimeout(0.2)
                    try:
                        s.recv(65536)
                    except OSError:
                        pass
            except OSError:
                time.sleep(0.05)

    threads = [threading.Thread(target=one, args=(port, i), daemon=True)
               for port in ports.values() for i in range(clients)]
    for t in threads:
        t.start()
    stop.wait()


@contextmanager
def attackers(target, ports: dict, n: int):
    """Run ``target(ports, n, stop)`` in another process while the block runs."""
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=target, args=(ports, n, stop), daemon=True)
    proc.start()
    try:
        yield
    finally:
        stop.set()
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def open_many(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        except OSError:
            break
    return socks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--live", action="store_true", help="with the live terminal view (default: --quiet, JSONL log)")
    ap.add_argument("--phases", default="flood,fuzz,slowloris,idle,literal,append,peer")
    ap.add_argument("--fuzzers", type=int, default=0, help="fuzzing clients per protocol (default 40, --quick 10)")
    ap.add_argument("--profile", default="", metavar="FILE",
                    help="run the lab under cProfile and save its stats in FILE (a profiling aid)")
    args = ap.parse_args()
    flood_n = 20_000 if args.quick else 100_000
    fuzzers = args.fuzzers or (10 if args.quick else 40)
    lorises = 100 if args.quick else 500
    idlers = 50 if args.quick else 200
    big = (10 if args.quick else 50) * 1024 * 1024
    rounds = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as d:
        lab = Lab(d, quiet=not args.live, profile=args.profile)
        print(f"lab: {'live view' if args.live else '--quiet'}, JSONL log", flush=True)
        try:
            print(f"idle RSS {lab.rss():.1f} MB; ports {lab.ports}", flush=True)
            base_times = probe(lab, rounds)
            baseline = statistics.median(base_times)
            report("baseline", lab, base_times, baseline, lab.rss())

            if "flood" in args.phases:
                # -- flood: 100,000 pipelined commands in one write, per protocol (attackers run in
                # other processes: the probing client must not wait for the GIL, only for the server)
                with attackers(flood, lab.ports, flood_n):
                    time.sleep(0.5)
                    with sampling(lab) as peak:
                        times = probe(lab, rounds)
                report("flood", lab, times, baseline, peak[0], peak[1])

            if "fuzz" in args.phases:
                # -- fuzz: clients sending random bytes
                with attackers(fuzz, lab.ports, fuzzers):
                    time.sleep(0.5)
                    with sampling(lab) as peak:
                        times = probe(lab, rounds)
                report("fuzz", lab, times, baseline, peak[0], peak[1])

            if "slowloris" in args.phases:
                # -- slowloris: sockets that send one byte now and then
                socks = open_many(lab.ports["smtp"], lorises // 2) + open_many(lab.ports["imap"], lorises // 2)
                for s in socks:
                    s.sendall(b"N")
                with sampling(lab) as peak:
                    times = probe(lab, rounds)
                report(f"slowloris", lab, times, baseline, peak[0], peak[1])
                for s in socks:
                    s.close()

            if "idle" in args.phases:
                # -- IDLE sessions
                idles = []
                for _ in range(idlers):
                    i = imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=30)
                    i.login("alice", "alice")
                    i.select("INBOX")
                    tag = i._new_tag()
                    i.send(tag + b" IDLE\r\n")
                    i.readline()
                    idles.append(i)
                with sampling(lab) as peak:
                    times = probe(lab, rounds)
                report("idle", lab, times, baseline, peak[0], peak[1])
                for i in idles:
                    i.shutdown()

            if "literal" in args.phases:
                # -- literal attack: unauthenticated LOGIN {64 MiB+} with 50 MB sent
                def literal_attack() -> None:
                    with socket.create_connection(("127.0.0.1", lab.ports["imap"]), timeout=60) as s:
                        s.recv(1000)
                        try:
                            s.sendall(b"b LOGIN {67108864+}\r\n")
                            chunk = b"x" * 65536
                            for _ in range(big // len(chunk)):
                                s.sendall(chunk)
                        except OSError:
                            pass  # the server said BYE [TOOBIG] and closed: the point

                threads = [threading.Thread(target=literal_attack) for _ in range(4)]
                with sampling(lab) as peak:
                    for t in threads:
                        t.start()
                    times = probe(lab, 1)
                    for t in threads:
                        t.join()
                report("literal", lab, times, baseline, peak[0], peak[1])

            if "append" in args.phases:
                # -- eight big APPENDs in parallel
                message = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (big // 1000)

                def append() -> None:
                    with imaplib.IMAP4("127.0.0.1", lab.ports["imap"], timeout=300) as i:
                        i.login("alice", "alice")
                        typ, _ = i.append("INBOX", None, None, message)
                        assert typ == "OK", typ

                threads = [threading.Thread(target=append) for _ in range(8)]
                with sampling(lab) as peak:
                    for t in threads:
                        t.start()
                    times = probe(lab, 1)
                    for t in threads:
                        t.join()
                time.sleep(1)
                report("append", lab, times, baseline, peak[0], peak[1])
            if "peer" in args.phases:
                peer_phase(lab, d, fuzzers, rounds)
        finally:
            print(f"SIGTERM: stopped in {lab.stop():.2f} s", flush=True)


def smtp_probe(ports: dict, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds * 3):
        t = time.monotonic()
        try:
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=120) as s:
                s.sendmail("carol@lab.test", ["bob@lab.test"], b"Subject: soak\r\n\r\nhello\r\n")
        except (OSError, smtplib.SMTPException) as exc:
            FAILED.append(f"smtp: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        out.append((time.monotonic() - t) * 1000)
    return out or [float("nan")]


def peer_phase(lab: Lab, directory: str, fuzzers: int, rounds: int) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pathlib import Path

    from bench_lab import Aiosmtpd  # aiosmtpd with a Maildir handler, its own process

    peer = Aiosmtpd(Path(directory) / "aiosmtpd").start()
    try:
        times: dict[str, list[float]] = {"mailtrace": [], "aiosmtpd": []}
        for _ in range(2):  # in turns: the machine's other load falls on both
            for name, ports in (("mailtrace", {"smtp": lab.ports["smtp"]}), ("aiosmtpd", peer.ports)):
                with attackers(fuzz, ports, fuzzers):
                    time.sleep(0.5)
                    times[name] += smtp_probe(ports, rounds)
        med = {name: statistics.median(t) for name, t in times.items()}
        failed = f"   {len(FAILED)} failed: {FAILED[0]}" if FAILED else ""
        FAILED.clear()
        print(f"peer       new SMTP client under {fuzzers} SMTP fuzzers: mailtrace median {med['mailtrace']:7.1f} ms, "
              f"aiosmtpd {med['aiosmtpd']:7.1f} ms: ratio {med['mailtrace'] / med['aiosmtpd']:5.2f}x{failed}", flush=True)
    finally:
        peer.stop()


if __name__ == "__main__":
    main()
