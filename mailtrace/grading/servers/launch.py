"""Start a student's server in the sandbox, wait until it listens, stop it, end every process of it.

This is the one place the server grader touches the sandbox (``mailtrace.grading.sandbox``):
it borrows the sandbox's command line (limits, uid, private /tmp) and environment, but runs the
program in the background instead of to completion.  The grader's scripted clients then reach
the server on 127.0.0.1:PORT: the grader and the server share one network namespace (``mailtrace
grade`` moves itself into a private loopback-only namespace when it can, see
``sandbox.enter_private_network``), so the clients run in the same namespace as the server.

The contract (../shared/contracts.md, "Server exercises"): the server listens within 10 s and
exits 0 within 5 s of SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mailtrace.grading.sandbox import ProgramResult, Sandbox, _Capture

LISTEN_TIMEOUT = 10.0  # seconds the server has to start listening
STOP_TIMEOUT = 5.0  # seconds it has to exit after SIGTERM
BUILD_TIMEOUT = 60.0
POLL = 0.02  # seconds between two connection attempts while waiting for the server


def free_port() -> int:
    """An unused loopback port (the kernel's choice, released for the server to take)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command_for(workdir: Path, program: str, python: str) -> list[str]:
    """How the submission is started: ``./run`` when the folder has one, else the Python file."""
    run = workdir / "run"
    if run.is_file():
        return ["./run"]
    return [python, program]


def build(sandbox: Sandbox, workdir: Path) -> ProgramResult | None:
    """Run build.sh or make first when the submission has one (in the sandbox); None: nothing to build."""
    if (workdir / "build.sh").is_file():
        argv = ["/bin/sh", "build.sh"]
    elif (workdir / "Makefile").is_file() or (workdir / "makefile").is_file():
        argv = ["make", "-s"]
    else:
        return None
    from dataclasses import replace

    sb = replace(sandbox, limits=replace(sandbox.limits, timeout=BUILD_TIMEOUT, cpu_seconds=int(BUILD_TIMEOUT)))
    result = sb.run(argv, workdir)
    run = workdir / "run"
    if run.is_file():
        os.chmod(run, 0o755)
    return result


@dataclass
class Stopped:
    """How the server ended."""

    result: ProgramResult  # exit status, stdout, stderr
    after_sigterm: bool  # it was still running when the grader sent SIGTERM
    exited_in_time: bool  # it exited by itself within STOP_TIMEOUT of SIGTERM
    stop_seconds: float  # from SIGTERM to exit (or to the kill)


class ServerProcess:
    """A student's server running in the background in the sandbox."""

    def __init__(self, sandbox: Sandbox, argv: list[str], workdir: Path, port: int) -> None:
        self.sandbox = sandbox
        self.argv = argv
        self.port = port
        self.started = time.monotonic()
        self.error = ""
        lim = sandbox.limits
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                sandbox.command(argv), cwd=workdir, env=sandbox.env(workdir), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0, close_fds=True)
        except OSError as exc:
            self.proc = None
            self.error = str(exc)
            return
        self._out = _Capture(self.proc.stdout, lim.output_bytes)
        self._err = _Capture(self.proc.stderr, lim.output_bytes)
        # a hard stop: whatever happens to the grader's clients, the server dies at the deadline
        self._deadline = threading.Timer(lim.timeout, self.kill)
        self._deadline.daemon = True
        self._deadline.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_listening(self, port: int, timeout: float = LISTEN_TIMEOUT) -> str:
        """'' once 127.0.0.1:port accepts connections, else why not (the report shows it)."""
        if self.proc is None:
            return f"could not start: {self.error}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    pass
                if self.proc.poll() is not None and not _listening_pids(port):
                    break
                return ""  # accepted (a server that forked into the background is caught at stop)
            except OSError:
                pass
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._err.join(1.0)
                why = _stderr_gist(self._err.data)
                return (f"the server exited (status {code}) before listening on 127.0.0.1:{port}{why}"
                        if code >= 0 else f"the server died ({_signal_name(-code)}) before listening{why}")
            time.sleep(POLL)
        other = _listening_ports_of(self.proc.pid, self.sandbox.uid if self.sandbox.isolate else None)
        if other:
            return (f"the server listens on {', '.join(other)} instead of 127.0.0.1:{port} "
                    f"(it must use the --port argument)")
        return f"the server did not listen on 127.0.0.1:{port} within {timeout:g} s"

    def stop(self) -> Stopped:
        """SIGTERM, up to STOP_TIMEOUT for it to exit, then SIGKILL to every process it left."""
        if self.proc is None:
            return Stopped(ProgramResult(argv=self.argv, exit_code=None, error=self.error,
                                         enforced=self.sandbox.enforced()), False, False, 0.0)
        t0 = time.monotonic()
        alive = self.proc.poll() is None
        if alive:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
            in_time = True
        except subprocess.TimeoutExpired:
            in_time = False
        stop_seconds = time.monotonic() - t0
        self.kill()
        self.proc.wait()
        self._deadline.cancel()
        self._out.join()
        self._err.join()
        code = self.proc.returncode
        sig = -code if code < 0 else None
        result = ProgramResult(argv=self.argv, exit_code=None if sig else code, signal=sig,
                               timed_out=not in_time, stdout=self._out.data, stderr=self._err.data,
                               truncated=self._out.truncated or self._err.truncated,
                               duration=time.monotonic() - self.started, enforced=self.sandbox.enforced(),
                               limit_seconds=STOP_TIMEOUT)
        return Stopped(result, alive, alive and in_time, stop_seconds)

    def kill(self) -> None:
        """End every process of the server: its process group, (isolated) its uid, and whatever
        still listens on its port (a daemon that left the process group with setsid())."""
        if self.proc is None:
            return
        self.sandbox._kill(self.proc)
        for pid in _pids_listening_on(self.port):
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _stderr_gist(err: bytes) -> str:
    """The line of a crash's stderr worth quoting: the exception (Python's is last, Java's first)."""
    lines = [line.strip() for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    named = [line for line in lines if "Error" in line or "Exception" in line]
    return f"; its stderr says: {(named[-1] if named else lines[-1])[:240]}"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


# -- who listens where (Linux /proc) -----------------------------------------------------------
def _listening_sockets() -> dict[str, str]:
    """{socket inode: 'address:port'} of the TCP sockets listening in this network namespace."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
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


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _pids_of(root: int, uid: int | None) -> list[int]:
    """The server's processes: its process group, or every process of the sandbox uid."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if uid is not None and os.stat(f"/proc/{pid}").st_uid == uid:
                pids.append(pid)
            elif os.getpgid(pid) == root:
                pids.append(pid)
        except (OSError, ProcessLookupError):
            continue
    return pids


def _listening_ports_of(root: int, uid: int | None) -> list[str]:
    listening = _listening_sockets()
    found = set()
    for pid in _pids_of(root, uid):
        for inode in _socket_inodes(pid):
            if inode in listening:
                found.add(listening[inode])
    return sorted(found)


def _listening_pids(port: int) -> bool:
    return any(addr.endswith(f":{port}") for addr in _listening_sockets().values())


def _pids_listening_on(port: int) -> list[int]:
    inodes = {inode for inode, addr in _listening_sockets().items() if addr.endswith(f":{port}")}
    if not inodes:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _socket_inodes(int(entry)) & inodes:
            pids.append(int(entry))
    return pids
