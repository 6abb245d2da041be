"""Start a student's server in the sandbox, wait until it listens, stop it, end every process of it.

This is the one place the server grader touches the sandbox (``mailtrace.grading.sandbox``):
``Sandbox.start`` runs the program in the background (a :class:`~mailtrace.grading.sandbox.Running`
handle) and the whole scenario runs inside ``Sandbox.network()``, the run's own loopback-only
network namespace: the server listens on 127.0.0.1:PORT in it, and the grader's scripted
clients, opened by threads of the same block, reach it there and nowhere else.

The contract (../shared/contracts.md, "Server exercises"): the server listens within 10 s and
exits 0 within 5 s of SIGTERM.  SIGTERM goes to the program itself, not to the sandbox's
wrapper (bubblewrap would end the whole PID namespace at once); whatever is left at the end is
killed with the namespace (``Running.stop``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mailtrace.grading.sandbox import ProgramResult, Sandbox

LISTEN_TIMEOUT = 10.0  # seconds the server has to start listening
STOP_TIMEOUT = 5.0  # seconds it has to exit after SIGTERM
POLL = 0.02  # seconds between two connection attempts while waiting for the server
WRAPPERS = ("bwrap",)  # sandbox processes between the grader and the program (the others exec)


def free_port() -> int:
    """An unused loopback port in this thread's network namespace."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stopped:
    """How the server ended."""

    result: ProgramResult  # exit status, stdout, stderr
    after_sigterm: bool  # it was still running when the grader sent SIGTERM
    exited_in_time: bool  # it exited by itself within STOP_TIMEOUT of SIGTERM
    stop_seconds: float  # from SIGTERM to exit (or to the kill)


class ServerProcess:
    """A student's server running in the background in the sandbox."""

    def __init__(self, sandbox: Sandbox, argv: list[str], workdir: Path, port: int, timeout: float) -> None:
        self.sandbox = sandbox
        self.argv = argv
        self.port = port
        # the sandbox's own timer ends the server at ``timeout`` whatever the clients do
        self.running = sandbox.start(argv, workdir, timeout)
        self.proc = self.running.proc
        self.error = self.running.error

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT) -> str:
        """'' once 127.0.0.1:port accepts connections, else why not (the report shows it)."""
        from mailtrace.grading.checks import text

        port, lang = self.port, self.sandbox.lang
        if self.proc is None:
            return text("status.could-not-start", lang, error=self.error)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return ""
            except OSError:
                pass
            if self.proc.poll() is not None:
                self.running.err.join(1.0)
                code = self.proc.returncode
                gist = _stderr_gist(self.running.err.data)
                why = text("server.start-stderr", lang, line=gist) if gist else ""
                if code == 0:  # a daemon: the sandbox ends everything the program left behind
                    why += text("server.start-daemon", lang)
                return (text("server.start-exited", lang, code=code, port=port, why=why) if code >= 0
                        else text("server.start-died", lang, signal=_signal_name(-code), why=why))
            time.sleep(POLL)
        # in the run's private namespace whatever listens is the student's server
        other = [a for a in _listening_sockets().values() if not a.endswith(f":{port}")] \
            if self.sandbox.net_private else []
        if other:
            return text("server.start-other-port", lang, where=", ".join(sorted(other)), port=port)
        return text("server.start-timeout", lang, port=port, timeout=timeout)

    def stop(self) -> Stopped:
        """SIGTERM to the program, up to STOP_TIMEOUT for it to exit, then the sandbox ends the rest."""
        if self.proc is None:
            return Stopped(self.running.wait(), False, False, 0.0)
        t0 = time.monotonic()
        alive = self.proc.poll() is None and bool(_program_pids(self.proc.pid))
        if alive:
            for pid in _program_pids(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
            in_time = True
        except subprocess.TimeoutExpired:
            in_time = False
        stop_seconds = time.monotonic() - t0
        if not in_time:  # it ignored SIGTERM: end it now, not when its run's own limit comes
            self.running.stop()
        result = self.running.wait()  # kills whatever is left (the whole PID namespace when sealed)
        if not in_time:
            result.timed_out = True
            result.limit_seconds = STOP_TIMEOUT
        return Stopped(result, alive, alive and in_time, stop_seconds)

    def kill(self) -> None:
        """End every process of the server (idempotent)."""
        self.running.stop()


def _stderr_gist(err: bytes) -> str:
    """The line of a crash's stderr worth quoting: the exception (Python's is last, Java's first)."""
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    named = [line for line in lines if "Error" in line or "Exception" in line]
    return (named[-1] if named else lines[-1])[:240]


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


# -- who listens where (Linux /proc) -----------------------------------------------------------
def _listening_sockets() -> dict[str, str]:
    """{socket inode: 'address:port'} of the TCP sockets listening in this network namespace."""
    out = {}
    base = "/proc/thread-self/net" if os.path.exists("/proc/thread-self/net") else "/proc/net"
    for table in (f"{base}/tcp", f"{base}/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].rsplit(":", 1)
                host = "127.0.0.1" if address == "0100007F" else ("0.0.0.0" if set(address) == {"0"} else address)
                out[fields[9]] = f"{host}:{int(port, 16)}"
    return out


def _children() -> dict[int, list[int]]:
    """{ppid: [pids]} of every process visible here."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        out.setdefault(int(fields[1]), []).append(int(entry))
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _program_pids(root: int) -> list[int]:
    """The student's processes under the process the grader started: every descendant (and the
    root itself) except the sandbox's wrappers (bubblewrap and its PID-namespace init)."""
    children = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if _comm(pid) not in WRAPPERS:
            out.append(pid)
        todo += children.get(pid, [])
    return out
