"""Benchmark of the SMTP lab server against aiosmtpd (run by hand, not a test).

    .venv/bin/python tests/bench/bench_smtp.py [--seconds 3] [--rounds 2] [--sessions 1,10,100]
                                                    [--sizes 1024,102400] [--no-fsync] [--no-log] [--profile]

Each server runs in its own process (one CPU for the server, one for the load generator):

* mailtrace: ``mailtrace.servers.smtp`` on the Maildir store with fsync ON and the JSONL
  transcript sink ON (every command, reply and the whole DATA body written to a file);
* aiosmtpd: ``aiosmtpd.smtp.SMTP`` with a handler that stores each message with the standard
  library's ``mailbox.Maildir.add`` (no fsync), one Maildir per recipient.

The load generator opens N concurrent sessions (asyncio, raw sockets, a polite client that
waits for every reply); each session sends messages one after another (MAIL, RCPT, DATA,
body, ".") for a fixed time, and the number of messages answered 250 per second is printed
for every (sessions, size) pair with the ratio mailtrace / aiosmtpd.  ``--profile`` runs the
mailtrace server under cProfile and prints its hottest functions at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


# --- servers (run in a child process: `bench_smtp.py --serve KIND DIR`) ---------------------

async def serve_mailtrace(directory: Path, fsync: bool, log: bool) -> None:
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.lab import Lab
    from mailtrace.servers.smtp import make_core_factory
    from mailtrace.store.maildir import MaildirStore
    from mailtrace.transcript.recorder import Recorder

    sinks = []
    if log:
        from mailtrace.transcript.jsonl import JsonlSink

        sinks.append(JsonlSink(directory / "transcript.jsonl", autoflush=False))  # as `mailtrace lab --log`
    users = {"alice": "alice", "bob": "bob"}
    lab = Lab(directory=directory, users=users, recorder=Recorder(sinks))
    lab.store = MaildirStore(directory / "mail", users, fsync=fsync)
    listener = Listener(ListenerConfig("smtp", "127.0.0.1", 0), make_core_factory(lab), lab.recorder)
    await listener.start()
    print(listener.port, flush=True)
    await asyncio.Event().wait()


async def serve_aiosmtpd(directory: Path) -> None:
    import mailbox

    from aiosmtpd.smtp import SMTP

    boxes: dict[str, mailbox.Maildir] = {}
    (directory / "mail").mkdir(parents=True, exist_ok=True)

    class MaildirHandler:
        async def handle_DATA(self, server, session, envelope):
            for rcpt in envelope.rcpt_tos:
                user = rcpt.split("@")[0].lower()
                if user not in boxes:
                    boxes[user] = mailbox.Maildir(directory / "mail" / user, create=True)
                boxes[user].add(envelope.original_content)
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(MaildirHandler(), hostname="bench.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def child(kind: str, directory: str, fsync: bool, log: bool, profile: bool) -> None:
    coro = serve_mailtrace(Path(directory), fsync, log) if kind == "mailtrace" else serve_aiosmtpd(Path(directory))
    if not profile:
        try:
            asyncio.run(coro)
        except KeyboardInterrupt:
            pass
        return
    import cProfile
    import pstats
    import signal

    prof = cProfile.Profile()

    def dump(*_):
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    prof.enable()
    asyncio.run(coro)


# --- the load generator --------------------------------------------------------------------

async def session(port: int, body: bytes, stop_at: float, counter: list[int]) -> None:
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
    while time.monotonic() < stop_at:
        for cmd in (b"MAIL FROM:<bench@client.test>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n"):
            writer.write(cmd)
            await reply()
        writer.write(body)
        line = await reply()
        if line.startswith(b"250"):
            counter[0] += 1
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


def make_body(size: int) -> bytes:
    head = b"From: bench@client.test\r\nTo: bob@lab.test\r\nSubject: bench\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\r\n"
    lines = max(1, (size - len(head)) // len(line))
    return head + line * lines + b".\r\n"


async def load(port: int, sessions: int, size: int, seconds: float) -> tuple[float, int]:
    body = make_body(size)
    counter = [0]
    start = time.monotonic()
    stop_at = start + seconds
    await asyncio.gather(*(session(port, body, stop_at, counter) for _ in range(sessions)))
    return counter[0] / (time.monotonic() - start), counter[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc), or 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def start_server(kind: str, directory: Path, args) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, __file__, "--serve", kind, str(directory)]
    if args.no_fsync:
        cmd.append("--no-fsync")
    if args.no_log:
        cmd.append("--no-log")
    if args.profile and kind == "mailtrace":
        cmd.append("--profile")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2, help="measure each point this many times, keep the best")
    ap.add_argument("--sessions", default="1,10,100")
    ap.add_argument("--sizes", default="1024,102400")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--no-log", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        child(args.serve[0], args.serve[1], not args.no_fsync, not args.no_log, args.profile)
        return
    sessions = [int(x) for x in args.sessions.split(",")]
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"mailtrace: fsync {'off' if args.no_fsync else 'on'}, JSONL log {'off' if args.no_log else 'on'}; "
          f"aiosmtpd: mailbox.Maildir handler; best of {args.rounds} x {args.seconds:g} s per point, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'sessions':>8} {'size':>8} {'mailtrace msg/s':>16} {'aiosmtpd msg/s':>15} {'ratio':>6}   "
          f"{'CPU ms/msg: mailtrace':>9} {'aiosmtpd':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        procs, ports = {}, {}
        for kind in KINDS:
            directory = Path(tmp) / kind
            directory.mkdir()
            procs[kind], ports[kind] = start_server(kind, directory, args)
        results: dict = {}
        cpu_ms: dict = {}  # server CPU milliseconds per message (robust to load elsewhere)
        try:
            # Both servers stay up; the points alternate between them and the best of the
            # rounds is kept, so a burst of load elsewhere on the machine hurts both alike.
            for n in sessions:
                for size in sizes:
                    for _ in range(args.rounds):
                        for kind in KINDS:
                            cpu0 = cpu_seconds(procs[kind].pid)
                            rate, count = asyncio.run(load(ports[kind], n, size, args.seconds))
                            cpu = (cpu_seconds(procs[kind].pid) - cpu0) / max(count, 1) * 1000
                            results[(kind, n, size)] = max(rate, results.get((kind, n, size), 0.0))
                            cpu_ms[(kind, n, size)] = min(cpu, cpu_ms.get((kind, n, size), float("inf")))
                    ours, theirs = results[("mailtrace", n, size)], results[("aiosmtpd", n, size)]
                    ratio = ours / theirs if theirs else float("inf")
                    print(f"{n:>8} {size:>8} {ours:>16.0f} {theirs:>15.0f} {ratio:>6.2f}   "
                          f"{cpu_ms[('mailtrace', n, size)]:>9.2f} {cpu_ms[('aiosmtpd', n, size)]:>9.2f}", flush=True)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(10)


KINDS = ("mailtrace", "aiosmtpd")


if __name__ == "__main__":
    main()
