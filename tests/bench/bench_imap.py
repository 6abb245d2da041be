"""IMAP benchmark (run by hand, not a test): mailtrace's lab server against Dovecot's imap.

    .venv/bin/python tests/bench/bench_imap.py [--seconds 5] [--concurrency 1 10 100]
                                                    [--dovecot-tuned] [--jsonl] [--only NAME] [--pin]
                                                    [--line-ends crlf|lf]

One session = connect, greeting, LOGIN, SELECT INBOX, UID FETCH 1:* BODY.PEEK[], LOGOUT; the
client reads every literal by its byte count and checks the octets.  Both servers serve
identical Maildir trees, one each (built by ``bench_pop3.make_maildir_tree``): one user per concurrent client,
each holding the same 100 messages of 10 KB.  Both run on 127.0.0.1 ports chosen by the
kernel; Dovecot is started with a private configuration (``bench_pop3.Dovecot``) and stopped
at the end.  Both are measured in turns, each level ``--rounds`` times, best kept.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_pop3 import MESSAGE_SIZE, MESSAGES, Dovecot, mail_owner, make_maildir_tree, make_message, wait_port  # noqa: E402

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def _serve_mailtrace(directory: str, users: dict[str, str], port, jsonl: bool, cpus=None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.imap import make_core_factory
    from mailtrace.servers.lab import Lab
    from mailtrace.transcript.jsonl import JsonlSink
    from mailtrace.transcript.recorder import Recorder

    sinks = [JsonlSink(Path(directory) / "transcript.jsonl")] if jsonl else []
    lab = Lab(directory=Path(directory), users=users, recorder=Recorder(sinks))

    async def main() -> None:
        listener = Listener(ListenerConfig("imap"), make_core_factory(lab), lab.recorder)
        await listener.start()
        port.value = listener.port
        await asyncio.Event().wait()

    asyncio.run(main())


class Mailtrace:
    def __init__(self, directory: Path, users: dict[str, str], jsonl: bool = False, cpus=None) -> None:
        self.port_value = multiprocessing.Value("i", 0)
        self.proc = multiprocessing.Process(target=_serve_mailtrace,
                                            args=(str(directory), users, self.port_value, jsonl, cpus), daemon=True)

    def start(self) -> "Mailtrace":
        self.proc.start()
        deadline = time.monotonic() + 15
        while not self.port_value.value and time.monotonic() < deadline:
            time.sleep(0.02)
        self.ports = {"imap": self.port_value.value}
        wait_port(self.ports["imap"])
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


class SessionError(Exception):
    pass


async def imap_session(port: int, user: str, password: str) -> int:
    """One full session; returns the literal octets fetched."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        async def command(tag: bytes, line: bytes | None) -> int:
            if line is not None:
                writer.write(tag + b" " + line + b"\r\n")
            octets = 0
            while True:
                got = await reader.readline()
                if not got:
                    raise SessionError(f"connection closed during {line!r}")
                m = _LITERAL.search(got)
                if m:
                    octets += len(await reader.readexactly(int(m.group(1))))
                    continue
                if line is None:  # the greeting
                    if not got.startswith(b"* OK"):
                        raise SessionError(got)
                    return 0
                if got.startswith(tag + b" "):
                    if not got.startswith(tag + b" OK"):
                        raise SessionError(f"{line!r} -> {got!r}")
                    return octets

        await command(b"*", None)
        await command(b"a1", b"LOGIN " + user.encode() + b" " + password.encode())
        await command(b"a2", b"SELECT INBOX")
        octets = await command(b"a3", b"UID FETCH 1:* BODY.PEEK[]")
        await command(b"a4", b"LOGOUT")
        return octets
    finally:
        writer.close()


async def run_load(port: int, users: list[str], password: str, concurrency: int, seconds: float) -> tuple[int, int, int]:
    done = errors = octets = 0
    stop_at = time.monotonic() + seconds

    async def worker(k: int) -> None:
        nonlocal done, errors, octets
        while time.monotonic() < stop_at:
            try:
                got = await imap_session(port, users[k], password)
                octets += got
                done += 1
            except (SessionError, OSError, asyncio.IncompleteReadError) as exc:
                errors += 1
                if errors <= 3:
                    print(f"    error: {exc}", file=sys.stderr)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done, errors, octets


def measure(server, users, password, concurrency, seconds) -> float:
    port = server.ports["imap"]
    asyncio.run(run_load(port, users, password, concurrency, min(1.0, seconds)))  # warm up
    start = time.monotonic()
    done, errors, octets = asyncio.run(run_load(port, users, password, concurrency, seconds))
    elapsed = time.monotonic() - start
    expected = MESSAGES * len(make_message(1))  # the wire form: CRLF, as BODY[] sends it
    if done and octets != done * expected:
        raise SystemExit(f"wrong octets: {octets} for {done} sessions (expected {expected} each)")
    if errors:
        print(f"    {errors} failed sessions", file=sys.stderr)
    return done / elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--dovecot-tuned", action="store_true",
                        help="Dovecot's high-performance mode (reused login and imap processes)")
    parser.add_argument("--jsonl", action="store_true", help="mailtrace writes a JSONL transcript meanwhile")
    parser.add_argument("--only", choices=["mailtrace", "dovecot"])
    parser.add_argument("--rounds", type=int, default=2, help="measure each level this many times, keep the best")
    parser.add_argument("--line-ends", choices=["crlf", "lf"], default="crlf",
                        help="message files as mailtrace's SMTP writes them (crlf) or as Dovecot's LDA does (lf)")
    parser.add_argument("--pin", action="store_true",
                        help="servers on one CPU (Dovecot: all its processes), the client on the others")
    args = parser.parse_args(argv)
    if not shutil.which("dovecot") and args.only != "mailtrace":
        raise SystemExit("dovecot is not installed (Debian: dovecot-imapd)")
    users = {f"user{k}": "benchpw" for k in range(max(args.concurrency))}
    with tempfile.TemporaryDirectory(prefix="bench-imap-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the passwd file below
        # Two trees of the same messages, one per server (as bench_lab.py does): each keeps its own
        # uidlists and index files with the owner it needs.  Dovecot's mail processes never run as
        # root, so its tree belongs to the mail user; mailtrace's server keeps the bench's user (as
        # root, dropping to the mail user would leave it unable to read a Python installed under
        # /root, and the lazy imports of the standard library would fail mid-run).
        make_maildir_tree(root / "lab" / "mail", list(users), crlf=args.line_ends == "crlf")
        dove_mail = root / "dovecot-tree" / "mail"
        make_maildir_tree(dove_mail, list(users), crlf=args.line_ends == "crlf")
        if os.geteuid() == 0:
            uid, gid = mail_owner()
            subprocess.run(["chown", "-R", f"{uid}:{gid}", str(dove_mail.parent)], check=True)
        servers = {}
        server_cpus = None
        if args.pin:  # one core for the server under test (all of Dovecot's processes), the rest for the client
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) < 2:
                raise SystemExit("--pin needs at least two CPUs")
            server_cpus = {cpus[-1]}
            os.sched_setaffinity(0, set(cpus[:-1]))
        if args.only != "dovecot":
            servers["mailtrace"] = Mailtrace(root / "lab", users, args.jsonl, cpus=server_cpus)
        if args.only != "mailtrace":
            servers["dovecot"] = Dovecot(root / "dovecot", dove_mail, users, protocols=("imap",),
                                         tuned=args.dovecot_tuned, cpus=server_cpus)
        for server in servers.values():
            server.start()
        results: dict[tuple[str, int], float] = {}
        try:
            for c in args.concurrency:
                for _ in range(args.rounds):
                    for name, server in servers.items():
                        rate = measure(server, list(users), "benchpw", c, args.seconds)
                        results[(name, c)] = max(rate, results.get((name, c), 0.0))
                for name in servers:
                    rate = results[(name, c)]
                    print(f"{name:9} concurrency {c:3}: {rate:8.1f} sessions/s "
                          f"({rate * MESSAGES * MESSAGE_SIZE / 1e6:7.1f} MB/s)", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        if len(servers) == 2:
            print("\nconcurrency  mailtrace   dovecot   ratio")
            for c in args.concurrency:
                m, d = results[("mailtrace", c)], results[("dovecot", c)]
                print(f"{c:11}  {m:9.1f} {d:9.1f}   {m / d if d else float('inf'):5.2f}x")


if __name__ == "__main__":
    main()
