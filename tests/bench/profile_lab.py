"""Profile aid for the SMTP, POP3 and IMAP loads of bench_lab.py (run by hand, not a test).

    python tests/bench/profile_lab.py smtp|pop3|imap [--clients 10] [--seconds 4] [--rounds 2]
                                      [--py-spy FILE] [--perf FILE] [--lab-arg=--workers=auto]

Starts ``mailtrace lab --log`` as bench_lab.py does (live view on a pseudo-terminal, fsync on,
store on tmpfs), runs one load (every client's session as in bench_pop3/bench_imap; smtp:
``--clients`` sessions sending 1 KB messages as bench_lab.smtp_load), and prints the lab's CPU
per session (smtp: per message) split by thread (user and system time from /proc/PID/task):
the event loop (MainThread), the log writer, the live view, the store jobs.  With ``--workers``
(given as ``--lab-arg``) each worker process is counted too, its threads named "worker PID:
thread" (the worker processes are the lab's children), and a total per process.  Thread names
come from ``py-spy dump`` when py-spy is installed (``pip install py-spy``); otherwise thread
ids.  ``--py-spy FILE`` records a flame graph meanwhile (FILE ending in .txt: py-spy's raw
collapsed stacks, for scripts; ``--gil`` adds py-spy's option: only the thread holding the
interpreter lock), ``--perf FILE`` a ``perf record -g`` of the process.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_imap  # noqa: E402
import bench_lab  # noqa: E402
import bench_pop3  # noqa: E402


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """tid -> (user, system) seconds."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) / hz, int(fields[12]) / hz)
    return out


def lab_processes(pid: int) -> list[int]:
    """The lab's process and its children (the ``--workers`` processes), from its threads'
    /proc children files."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # (a thread that ended meanwhile)
            continue
    return found


def process_cpu(pids: list[int]) -> dict[tuple[int, int], tuple[float, float]]:
    """(pid, tid) -> (user, system) seconds, for every thread of every process in ``pids``."""
    return {(pid, tid): times for pid in pids for tid, times in thread_cpu(pid).items()}


def thread_names(pid: int) -> dict[int, str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        return {}
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True).stdout
    return {int(tid): re.sub(r"_\d+$", "", name)  # the store pool's threads as one
            for tid, name in re.findall(r'Thread (?:0x[0-9A-Fa-f]+ )?\(?(\d+)\)?.*?"([^"]+)"', dump)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("protocol", choices=["smtp", "pop3", "imap"])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--py-spy", dest="pyspy")
    ap.add_argument("--gil", action="store_true")
    ap.add_argument("--perf")
    ap.add_argument("--lab-arg", action="append", default=[], help="an extra option for `mailtrace lab` (--workers=2)")
    args = ap.parse_args()
    module = {"pop3": bench_pop3, "imap": bench_imap}.get(args.protocol)

    def load(seconds: float) -> tuple[float, int]:
        if module is None:  # smtp: messages, not sessions
            return bench_lab.smtp_load(port, args.clients, 1024, seconds)
        return bench_lab.session_load(module, port, list(users), args.clients, seconds)
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    users = {f"user{k}": bench_lab.PASSWORD for k in range(max(args.clients, 1))}
    print(f"profile_lab: {args.protocol}, {args.clients} clients, `mailtrace lab` {' '.join(args.lab_arg)}, "
          f"load average {bench_lab.load_average()}")
    with tempfile.TemporaryDirectory(prefix="profile-lab-", dir=base) as tmpname:
        tmp = Path(tmpname)
        bench_pop3.make_maildir_tree(tmp / "lab" / "mail", list(users))
        lab = bench_lab.Lab(tmp / "lab", {bench_lab.SINK_USER: bench_lab.PASSWORD, **users}, args.lab_arg, None).start()
        try:
            port = lab.ports[args.protocol]
            load(1.0)  # warm up
            pids = lab_processes(lab.pid)
            label = {p: "" if p == lab.pid else f"worker {p}: " for p in pids}
            names = {(p, tid): label[p] + name for p in pids for tid, name in thread_names(p).items()}
            for _ in range(args.rounds):
                recorder = None
                if args.pyspy:
                    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                    recorder = subprocess.Popen([spy, "record", "--threads", *(["--gil"] if args.gil else []),
                                                 *(["--subprocesses"] if len(pids) > 1 else []),
                                                 *(["--format", "raw"] if args.pyspy.endswith(".txt") else []),
                                                 "-o", args.pyspy, "-p", str(lab.pid), "-d", str(int(args.seconds))],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                elif args.perf:
                    recorder = subprocess.Popen(["perf", "record", "-g", "-p", str(lab.pid), "-o", args.perf, "--",
                                                 "sleep", str(int(args.seconds))],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                before, cpu0 = process_cpu(pids), bench_pop3.tree_cpu_seconds(lab.pid)
                rate, sessions = load(args.seconds)
                after, cpu = process_cpu(pids), bench_pop3.tree_cpu_seconds(lab.pid) - cpu0
                if recorder is not None:
                    recorder.wait()
                for p in pids:
                    names.update({(p, tid): label[p] + name for tid, name in thread_names(p).items()})
                per: collections.Counter[str] = collections.Counter()
                by_process: collections.Counter[str] = collections.Counter()
                for (p, tid), (user, system) in after.items():
                    u0, s0 = before.get((p, tid), (0.0, 0.0))
                    name = names.get((p, tid), f"{label[p]}thread {tid}")
                    per[name + " user"] += (user - u0) * 1000 / max(sessions, 1)
                    per[name + " sys"] += (system - s0) * 1000 / max(sessions, 1)
                    by_process[label[p].rstrip(": ") or "lab"] += (user - u0 + system - s0) * 1000 / max(sessions, 1)
                unit = "message" if module is None else "session"
                print(f"{rate:.1f} {unit}s/s, {cpu * 1000 / max(sessions, 1):.2f} ms CPU per {unit}: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in per.most_common() if v >= 0.05), flush=True)
                if len(pids) > 1:
                    print("  by process: " + ", ".join(f"{k} {v:.2f}" for k, v in by_process.most_common()), flush=True)
        finally:
            lab.stop()


if __name__ == "__main__":
    main()
