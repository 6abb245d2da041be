"""Benchmark of the Maildir store (run by hand, not a test).

    .venv/bin/python tests/bench/bench_store.py [--dir DIR] [--no-fsync]

Measures, on a fresh store in DIR (default: a temporary directory, so the file system of
/tmp), with fsync on unless --no-fsync:
  * deliver(): messages/s for 1 KB and 100 KB messages, from 1, 10 and 100 threads, next to
    the standard library's mailbox.Maildir.add() (what an aiosmtpd Maildir handler uses,
    which does not fsync) doing the same work from the same threads;
  * refresh() of an unchanged 1000-message mailbox (the cached path) and a forced rescan;
  * read() of every message of a 100 x 10 KB mailbox (what a POP3 RETR-all or an IMAP
    UID FETCH 1:* BODY.PEEK[] session does).
"""

from __future__ import annotations

import argparse
import mailbox
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mailtrace.store.maildir import MaildirStore  # noqa: E402


def message(size: int) -> bytes:
    head = b"From: a@lab.test\r\nTo: b@lab.test\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def run_threads(n_threads: int, total: int, work) -> float:
    per = total // n_threads
    barrier = threading.Barrier(n_threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(per):
            work()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return per * n_threads / (time.perf_counter() - start)


def bench_deliver(base: Path, fsync: bool) -> None:
    print(f"deliver (fsync {'on' if fsync else 'off'}): messages/s")
    print(f"{'size':>6} {'threads':>7} {'mailtrace':>10} {'mailbox.Maildir':>16} {'ratio':>6}")
    for size in (1024, 100 * 1024):
        data = message(size)
        total = 600 if size == 1024 else 200
        for n_threads in (1, 10, 100):
            n = max(total, n_threads)
            root = base / f"d-{size}-{n_threads}"
            store = MaildirStore(root, {"alice": "x"}, fsync=fsync)
            ours = run_threads(n_threads, n, lambda: store.deliver("alice", data))
            store.close()
            md = mailbox.Maildir(str(base / f"std-{size}-{n_threads}"), create=True)
            lock = threading.Lock()

            def std_add() -> None:
                with lock:  # mailbox.Maildir is not thread-safe
                    md.add(data)

            theirs = run_threads(n_threads, n, std_add)
            print(f"{size // 1024:>5}K {n_threads:>7} {ours:>10.0f} {theirs:>16.0f} "
                  f"{ours / theirs:>6.2f}")
            shutil.rmtree(root, ignore_errors=True)


def bench_refresh(base: Path) -> None:
    root = base / "refresh"
    store = MaildirStore(root, {"alice": "x"}, fsync=False)
    data = message(1024)
    for _ in range(1000):
        store.deliver("alice", data)
    old = time.time() - 3600  # as if the last change were an hour ago: listing trusted
    for sub in ("new", "cur"):
        os.utime(root / "alice" / sub, (old, old))
    box = store.mailbox("alice")
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        box.refresh()
    cached = (time.perf_counter() - start) / n
    folder = box._folder
    start = time.perf_counter()
    for _ in range(50):
        folder.sync(force=True)
    forced = (time.perf_counter() - start) / 50
    start = time.perf_counter()
    for _ in range(200):
        box.messages()
    listing = (time.perf_counter() - start) / 200
    print(f"refresh of 1000 messages: cached {cached * 1e6:.1f} us, forced rescan "
          f"{forced * 1e3:.2f} ms, messages() {listing * 1e6:.0f} us")
    store.close()


def bench_read(base: Path) -> None:
    root = base / "read"
    store = MaildirStore(root, {"alice": "x"}, fsync=False)
    data = message(10 * 1024)
    for _ in range(100):
        store.deliver("alice", data)
    n = 50
    start = time.perf_counter()
    for _ in range(n):
        box = store.mailbox("alice")
        for info in box.messages():
            box.read(info.uid)
    per_session = (time.perf_counter() - start) / n
    print(f"open + read all of 100 x 10 KB: {per_session * 1e3:.2f} ms per session "
          f"({100 / per_session:.0f} messages/s)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to make the Maildirs (file system!)")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-store-", dir=args.dir))
    try:
        bench_deliver(base, fsync=not args.no_fsync)
        bench_refresh(base)
        bench_read(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
