"""POP3 benchmark (run by hand, not a test): mailtrace's lab server against Dovecot's pop3.

    .venv/bin/python tests/bench/bench_pop3.py [--seconds 3] [--concurrency 1 10 100]
                         [--rounds 2] [--line-ends crlf|lf] [--dovecot-tuned] [--jsonl] [--pin]

One session = connect, greeting, USER, PASS, STAT, RETR every message, QUIT.  Both servers
serve identical Maildir trees (one each): one user per concurrent client (POP3 locks a maildrop for one
session at a time, RFC 1939 §4), each holding the same 100 messages of 10 KB (hard links to
one set of files).  Both run on 127.0.0.1 ports chosen by the kernel; Dovecot is started with
a private configuration under a temporary directory and stopped at the end.

The Dovecot harness (``Dovecot``: write a config, start, stop) is plain functions so the IMAP
benchmark can reuse it: ``Dovecot(workdir, mail_root, users, protocols=("imap",))``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MESSAGES = 100
MESSAGE_SIZE = 10 * 1024


# --- the Maildir -------------------------------------------------------------------------------
def make_message(n: int, size: int = MESSAGE_SIZE) -> bytes:
    head = (f"From: bench{n}@lab.test\r\nTo: user@lab.test\r\nSubject: benchmark message {n}\r\n"
            f"Message-ID: <bench.{n}@lab.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxy\r\n"  # 80
    body = (line * (size // len(line) + 1))[: size - len(head) - 2] + b"\r\n"
    return head + body


def make_maildir_tree(mail_root: Path, users: list[str], messages: int = MESSAGES, size: int = MESSAGE_SIZE,
                      crlf: bool = True) -> None:
    """<mail_root>/<user>/{cur,new,tmp}, each user's cur/ hard-linking one set of message files.

    ``crlf``: files hold CRLF line ends, as mailtrace's SMTP delivers them (the bytes as sent);
    otherwise LF, as Dovecot's LDA writes them.  Names carry S= (file size) and W= (wire size),
    as Dovecot names the files it delivers.
    """
    template = mail_root.parent / "template"
    (template).mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(1, messages + 1):
        wire = make_message(n, size)
        data = wire if crlf else wire.replace(b"\r\n", b"\n")
        path = template / f"{1700000000 + n}.M{n}P1.bench,S={len(data)},W={len(wire)}:2,S"
        path.write_bytes(data)
        files.append(path)
    for user in users:
        for sub in ("cur", "new", "tmp"):
            (mail_root / user / sub).mkdir(parents=True, exist_ok=True)
        for path in files:
            os.link(path, mail_root / user / "cur" / path.name)


# --- Dovecot -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """A private Dovecot instance on loopback (mail processes run as the 'mail' user; plaintext auth allowed).

    ``workdir`` must be reachable by the ``dovecot`` user (its auth process reads the passwd
    file there): not under a 0700 directory such as a fresh ``tempfile.mkdtemp()``.
    """

    def __init__(self, workdir: Path, mail_root: Path, users: dict[str, str], protocols=("pop3",),
                 tuned: bool = False, cpus: set[int] | None = None) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.ports = {proto: free_port() for proto in protocols}
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "run").mkdir(exist_ok=True)
        (workdir / "state").mkdir(exist_ok=True)
        # Dovecot never gives mail access to UID 0: the mail processes run as "mail", which
        # must own the Maildirs (mailtrace, running as root, reads and writes them anyway).
        uid, gid = mail_owner()
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(mail_root)], check=True)
        passwd = workdir / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}:{uid}:{gid}::{mail_root}/{u}::\n" for u, p in users.items()))
        services = []
        for proto, port in self.ports.items():
            login = (f"  service_count = 0\n  process_min_avail = 2\n" if tuned else "")
            services.append(f"service {proto}-login {{\n  inet_listener {proto} {{\n    address = 127.0.0.1\n"
                            f"    port = {port}\n  }}\n  inet_listener {proto}s {{\n    port = 0\n  }}\n{login}}}\n")
            if tuned:
                services.append(f"service {proto} {{\n  service_count = 0\n  client_limit = 1\n"
                                f"  process_min_avail = 4\n}}\n")
        self.config = workdir / "dovecot.conf"
        self.config.write_text(f"""
instance_name = mailtrace-bench-{os.getpid()}
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
protocols = {" ".join(protocols)}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail_root}/%u
default_internal_user = dovecot
default_login_user = dovenull
default_process_limit = 1000
default_client_limit = 4000
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service anvil {{
  client_limit = 4000
}}
service auth {{
  client_limit = 4000
}}
{"".join(services)}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Dovecot":
        cpus = self.cpus
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.pid = self.proc.pid
        for port in self.ports.values():
            wait_port(port, self.proc, self.workdir / "dovecot.log")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def mail_owner() -> tuple[int, int]:
    import pwd

    for name in ("mail", "dovecot"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    return 65534, 65534


def wait_port(port: int, proc=None, log: Path | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and getattr(proc, "poll", lambda: None)() is not None:
            detail = log.read_text() if log and log.exists() else ""
            raise RuntimeError(f"server exited early: {detail[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# --- mailtrace's server, in its own process --------------------------------------------------------
def _serve_mailtrace(directory: str, users: dict[str, str], port, jsonl: bool, cpus=None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.servers.lab import Lab
    from mailtrace.servers.pop3 import make_core_factory
    from mailtrace.transcript.jsonl import JsonlSink
    from mailtrace.transcript.recorder import Recorder

    sinks = [JsonlSink(Path(directory) / "transcript.jsonl")] if jsonl else []
    lab = Lab(directory=Path(directory), users=users, recorder=Recorder(sinks))

    async def main() -> None:
        listener = Listener(ListenerConfig("pop3"), make_core_factory(lab), lab.recorder)
        await listener.start()
        port.value = listener.port
        await asyncio.Event().wait()

    asyncio.run(main())


class Mailtrace:
    def __init__(self, directory: Path, users: dict[str, str], jsonl: bool = False, cpus: set[int] | None = None) -> None:
        self.port_value = multiprocessing.Value("i", 0)
        self.proc = multiprocessing.Process(target=_serve_mailtrace,
                                            args=(str(directory), users, self.port_value, jsonl, cpus), daemon=True)

    def start(self) -> "Mailtrace":
        self.proc.start()
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while not self.port_value.value and time.monotonic() < deadline:
            time.sleep(0.02)
        self.ports = {"pop3": self.port_value.value}
        wait_port(self.ports["pop3"])
        return self

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


# --- the client ------------------------------------------------------------------------------------
class SessionError(Exception):
    pass


async def pop3_session(port: int, user: str, password: str) -> int:
    """One full session; returns the octets retrieved."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        async def status(cmd: bytes | None) -> bytes:
            if cmd is not None:
                writer.write(cmd)
            line = await reader.readline()
            if not line.startswith(b"+OK"):
                raise SessionError(f"{cmd!r} -> {line!r}")
            return line

        await status(None)
        await status(b"USER " + user.encode() + b"\r\n")
        await status(b"PASS " + password.encode() + b"\r\n")
        count = int((await status(b"STAT\r\n")).split()[1])
        octets = 0
        for n in range(1, count + 1):
            writer.write(b"RETR %d\r\n" % n)
            data = await reader.readuntil(b"\r\n.\r\n")
            if not data.startswith(b"+OK"):
                raise SessionError(data[:80])
            octets += len(data)
        await status(b"QUIT\r\n")
        return octets
    finally:
        writer.close()


async def run_load(port: int, users: list[str], password: str, concurrency: int, seconds: float) -> tuple[int, int, int]:
    """Sessions completed, errors, octets, with ``concurrency`` clients looping for ``seconds``."""
    done = errors = octets = 0
    stop_at = time.monotonic() + seconds

    async def worker(k: int) -> None:
        nonlocal done, errors, octets
        user = users[k]
        while time.monotonic() < stop_at:
            try:
                got = await pop3_session(port, user, password)  # (not "octets += await": lost updates)
                octets += got
                done += 1
            except (SessionError, OSError, asyncio.IncompleteReadError) as exc:
                errors += 1
                if errors <= 3:
                    print(f"    error: {exc}", file=sys.stderr)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done, errors, octets


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid``, its live descendants, and the children it
    has reaped (Dovecot's per-session pop3 processes end up in the master's cutime/cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        fields = stats.get(p)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if p == pid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped children)
        todo += children.get(p, [])
    return total / tick


def measure(server, users, password, concurrency, seconds) -> tuple[float, float]:
    """(sessions per second, server CPU milliseconds per session)."""
    port = server.ports["pop3"]
    asyncio.run(run_load(port, users, password, concurrency, min(1.0, seconds)))  # warm up
    cpu0 = tree_cpu_seconds(server.pid)
    start = time.monotonic()
    done, errors, octets = asyncio.run(run_load(port, users, password, concurrency, seconds))
    elapsed = time.monotonic() - start
    cpu = tree_cpu_seconds(server.pid) - cpu0
    expected = MESSAGES * len(make_message(1))
    if done and octets < done * expected:
        raise SystemExit(f"short sessions: {octets} octets for {done} sessions")
    if errors:
        print(f"    {errors} failed sessions", file=sys.stderr)
    return done / elapsed, (cpu * 1000 / done if done else float("inf"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--dovecot-tuned", action="store_true",
                        help="Dovecot's high-performance mode (reused login and pop3 processes)")
    parser.add_argument("--jsonl", action="store_true", help="mailtrace writes a JSONL transcript meanwhile")
    parser.add_argument("--only", choices=["mailtrace", "dovecot"])
    parser.add_argument("--line-ends", choices=["crlf", "lf"], default="crlf",
                        help="message files as mailtrace's SMTP writes them (crlf) or as Dovecot's LDA does (lf)")
    parser.add_argument("--pin", action="store_true",
                        help="servers on one CPU (Dovecot: all its processes), the client on the others")
    parser.add_argument("--rounds", type=int, default=2, help="measure each level this many times, keep the best")
    args = parser.parse_args(argv)
    if not shutil.which("dovecot") and args.only != "mailtrace":
        raise SystemExit("dovecot is not installed (Debian: dovecot-pop3d)")
    nusers = max(args.concurrency)
    users = {f"user{k}": "benchpw" for k in range(nusers)}
    with tempfile.TemporaryDirectory(prefix="bench-pop3-") as tmp:
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
            servers["dovecot"] = Dovecot(root / "dovecot", dove_mail, users, tuned=args.dovecot_tuned,
                                         cpus=server_cpus)
        for server in servers.values():
            server.start()
        # Both servers run side by side and are measured in turns, each concurrency level
        # ``--rounds`` times (best kept), so that other load on the machine hits both alike.
        results: dict[tuple[str, int], float] = {}
        cpu: dict[tuple[str, int], float] = {}
        try:
            for c in args.concurrency:
                for _ in range(args.rounds):
                    for name, server in servers.items():
                        rate, ms = measure(server, list(users), "benchpw", c, args.seconds)
                        results[(name, c)] = max(rate, results.get((name, c), 0.0))
                        cpu[(name, c)] = min(ms, cpu.get((name, c), float("inf")))
                for name in servers:
                    rate = results[(name, c)]
                    print(f"{name:9} concurrency {c:3}: {rate:8.1f} sessions/s "
                          f"({rate * MESSAGES * MESSAGE_SIZE / 1e6:7.1f} MB/s), "
                          f"server CPU {cpu[(name, c)]:6.2f} ms/session", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        if len(servers) == 2:
            print("\n(sessions/s: best of the rounds; CPU: the server's own CPU time per session, which"
                  "\n other load on the machine disturbs less than wall-clock rates)")
            print("concurrency   sessions/s mailtrace  dovecot  ratio   CPU ms/session mailtrace  dovecot  ratio")
            for c in args.concurrency:
                m, d = results[("mailtrace", c)], results[("dovecot", c)]
                mc, dc = cpu[("mailtrace", c)], cpu[("dovecot", c)]
                print(f"{c:11}   {m:20.1f} {d:8.1f} {m / d if d else float('inf'):5.2f}x"
                      f"   {mc:24.2f} {dc:8.2f} {dc / mc if mc else float('inf'):5.2f}x")


if __name__ == "__main__":
    main()
