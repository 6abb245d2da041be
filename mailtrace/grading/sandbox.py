"""The runner's sandbox: start a student's program with limits, and always get control back.

Theory of operation: every scenario runs the program in a fresh working directory, as a
subprocess in its own process group, with a scrubbed environment and a wall-clock timeout.
What else is enforced depends on the machine, and the report says which:

* root (a lab machine, Gradescope's container): the program runs inside a private mount
  namespace (``unshare``): world-writable directories (/tmp, /var/tmp, /dev/shm) are hidden
  behind private tmpfs mounts; it drops to a dedicated unprivileged uid per parallel slot
  (``setpriv``) so file permissions and RLIMIT_NPROC (counted per real uid) mean something,
  and at the end every process of that uid is killed (a fork bomb's children, or one that
  escaped its process group with setsid(), included);
* everywhere: CPU, address-space, file-size, process-count and open-file limits (``prlimit``,
  or ``resource.setrlimit`` in the child when prlimit is missing), output truncated.

The network is restricted by the caller (``mailtrace grade`` re-runs itself inside a private
network namespace that has only loopback, see :func:`network_isolation`), because the scripted
server must live in the same namespace as the program.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailtrace._compat import NEW_PROCESS_GROUP

MiB = 1024 * 1024
#: the unprivileged uids programs run as: one per parallel slot, and a block per grader
#: process, so two graders on one machine never share (nor kill) each other's uid
SANDBOX_UID_BASE = 200000
SLOTS_PER_PROCESS = 100
#: world-writable directories hidden behind a private tmpfs in the program's mount namespace
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
#: where working directories live when running as root: not world-writable, so the tmpfs
#: mounts above do not hide them
ROOT_BASE = Path("/run/mailtrace-grade")
#: environment variables the program keeps (everything else is scrubbed)
KEEP_ENV = ("LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class Limits:
    timeout: float = 20.0  # wall clock, seconds
    cpu_seconds: int = 10
    memory_bytes: int = 1024 * MiB  # RLIMIT_AS: a 4 GB allocation fails with MemoryError
    file_bytes: int = 16 * MiB  # RLIMIT_FSIZE: largest file the program may write
    processes: int = 64  # RLIMIT_NPROC (per uid: only meaningful with a dedicated uid)
    open_files: int = 128
    output_bytes: int = 64 * 1024  # stdout and stderr are each cut to this size


@dataclass
class ProgramResult:
    argv: list[str]
    exit_code: int | None  # None: killed (timeout) or died by a signal
    signal: int | None = None
    timed_out: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    truncated: bool = False
    duration: float = 0.0
    error: str = ""  # the program could not be started at all
    enforced: tuple[str, ...] = ()
    limit_seconds: float = 0.0  # the wall-clock limit it ran under

    @property
    def crashed(self) -> bool:
        return self.signal is not None and not self.timed_out

    def status_text(self) -> str:
        """How the program ended, and which limit it ran into (the report shows this)."""
        if self.error:
            return f"could not start: {self.error}"
        if self.timed_out:
            text = f"killed: still running after {self.limit_seconds:g} s (wall-clock limit)"
        elif self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            text = f"killed by signal {name}" + (" (CPU time limit)" if name == "SIGXCPU" else "")
        else:
            text = f"exit status {self.exit_code}"
        return text + "".join(f" ({note})" for note in self.limit_notes())

    def limit_notes(self) -> list[str]:
        err = self.stderr[-4000:]
        notes = []
        if b"MemoryError" in err:
            notes.append("memory limit reached")
        if b"Resource temporarily unavailable" in err or b"BlockingIOError" in err and b"fork" in err:
            notes.append("process limit reached")
        if b"Network is unreachable" in err or b"ENETUNREACH" in err:
            notes.append("network beyond loopback blocked")
        if b"File too large" in err:
            notes.append("file size limit reached")
        if self.truncated:
            notes.append("output cut")
        return notes


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class Sandbox:
    limits: Limits = field(default_factory=Limits)
    slot: int = 0  # parallel slot: each gets its own uid
    isolate: bool | None = None  # None: when root and the tools are there

    def __post_init__(self) -> None:
        tools = all(shutil.which(t) for t in ("setpriv", "prlimit"))
        if self.isolate is None:  # root, and allowed to switch uid (not so in every container)
            self.isolate = _is_root() and tools and _works("setpriv", "--reuid=65534", "--regid=65534",
                                                            "--clear-groups", "true")
        # a private /tmp needs a mount namespace: refused in unprivileged containers (Docker)
        self.private_tmp = bool(self.isolate and shutil.which("unshare") and os.path.exists("/bin/sh")
                                and _works("unshare", "--mount", "--propagation", "private", "true"))
        self.prlimit = shutil.which("prlimit")
        block = SANDBOX_UID_BASE + (os.getpid() % 100000) * SLOTS_PER_PROCESS
        self.uid = block + self.slot % SLOTS_PER_PROCESS if self.isolate else os.getuid()

    # -- working directory -----------------------------------------------------------------
    def make_workdir(self) -> Path:
        if self.isolate:
            base = None
            if self.private_tmp:  # outside the directories the tmpfs mounts hide
                try:
                    ROOT_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
                    os.chmod(ROOT_BASE, 0o711)
                    base = ROOT_BASE
                except OSError:
                    self.private_tmp = False
            path = Path(tempfile.mkdtemp(prefix="run-", dir=base))
            os.chmod(path, 0o700)
            os.chown(path, self.uid, self.uid)
        else:
            path = Path(tempfile.mkdtemp(prefix="mailtrace-run-"))
        return path

    def give(self, path: Path) -> None:
        """Hand a file or directory tree inside the working directory to the program's uid."""
        if not self.isolate:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.uid)
            for name in files:
                os.chown(os.path.join(root, name), self.uid, self.uid)

    def remove_workdir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    # -- python ----------------------------------------------------------------------------
    def python(self) -> str:
        """The interpreter students' programs run with (one the sandbox uid may execute)."""
        if self.isolate:
            for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
                if os.access(candidate, os.X_OK):
                    return candidate
        return sys.executable

    def enforced(self) -> tuple[str, ...]:
        lim = self.limits
        out = [f"timeout {lim.timeout:g}s (process group killed)",
               f"CPU {lim.cpu_seconds}s, memory {lim.memory_bytes // MiB} MiB, files {lim.file_bytes // MiB} MiB, "
               f"{lim.processes} processes, {lim.open_files} open files",
               "fresh working directory, scrubbed environment",
               f"output cut to {lim.output_bytes // 1024} KiB"]
        if self.isolate:
            out.append(f"uid {self.uid} (unprivileged; every process of that uid killed at the end), "
                       + ("private /tmp /var/tmp /dev/shm" if self.private_tmp
                          else "shared /tmp (mount namespaces not permitted here)"))
        else:
            out.append("same uid as the grader (not root: no uid switch, no mount/PID namespace)")
        out.append(network_isolation())
        return tuple(out)

    # -- running ---------------------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        lim = self.limits
        limits = [f"--cpu={lim.cpu_seconds}", f"--as={lim.memory_bytes}", f"--fsize={lim.file_bytes}",
                  f"--nproc={lim.processes}", f"--nofile={lim.open_files}", "--core=0"]
        if not self.isolate:
            if self.prlimit:
                return [self.prlimit, *limits, "--", *argv]
            return argv
        drop = ["prlimit", *limits, "--",
                "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--no-new-privs",
                "--", *argv]
        if not self.private_tmp:
            return drop
        mounts = " ".join(d for d in WORLD_WRITABLE if os.path.isdir(d))
        script = (f'for d in {mounts}; do mount -t tmpfs -o size=8m,mode=1777 tmpfs "$d" 2>/dev/null; done; '
                  'exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", *drop]

    def env(self, workdir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
                    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"})
        env.setdefault("LANG", "C.UTF-8")
        return env

    def run(self, argv: list[str], workdir: Path) -> ProgramResult:
        lim = self.limits
        started = time.monotonic()
        preexec = None if (self.isolate or self.prlimit) else _set_limits(lim)
        try:
            proc = subprocess.Popen(self.command(argv), cwd=workdir, env=self.env(workdir),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    **NEW_PROCESS_GROUP, preexec_fn=preexec, close_fds=True)
        except OSError as exc:
            return ProgramResult(argv=argv, exit_code=None, error=str(exc), enforced=self.enforced())
        out = _Capture(proc.stdout, lim.output_bytes)
        err = _Capture(proc.stderr, lim.output_bytes)
        # a blocking wait (waitpid) returns the moment the program exits; Popen.wait(timeout)
        # would poll with sleeps of up to 50 ms.  A timer kills the group on timeout instead.
        fired = threading.Event()

        def on_timeout() -> None:
            fired.set()
            self._kill(proc)

        timer = threading.Timer(lim.timeout, on_timeout)
        timer.daemon = True
        timer.start()
        proc.wait()
        timer.cancel()
        timed_out = fired.is_set()
        self._kill(proc)
        proc.wait()
        out.join()
        err.join()
        code = proc.returncode
        sig = None
        if code is not None and code < 0:
            sig, code = -code, None
        if timed_out:
            sig, code = signal.SIGKILL, None
        return ProgramResult(argv=argv, exit_code=code, signal=sig, timed_out=timed_out, stdout=out.data,
                             stderr=err.data, truncated=out.truncated or err.truncated,
                             duration=time.monotonic() - started, enforced=self.enforced(),
                             limit_seconds=lim.timeout)

    def _kill(self, proc: subprocess.Popen) -> None:
        """Kill the whole process group (and, isolated, the PID namespace with everything in it)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.isolate:
            _kill_uid(self.uid)


@functools.cache
def _works(*argv: str) -> bool:
    """Does this command succeed here? (asked once per process)"""
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _kill_uid(uid: int) -> None:
    """Kill the processes left running as the sandbox uid (one that escaped with setsid)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


def _set_limits(lim: Limits):
    def apply() -> None:
        import resource

        for res, value in ((resource.RLIMIT_CPU, lim.cpu_seconds), (resource.RLIMIT_AS, lim.memory_bytes),
                           (resource.RLIMIT_FSIZE, lim.file_bytes), (resource.RLIMIT_NOFILE, lim.open_files),
                           (resource.RLIMIT_CORE, 0)):
            try:
                resource.setrlimit(res, (value, value))
            except (ValueError, OSError):
                pass

    return apply


class _Capture(threading.Thread):
    """Read a pipe to the end, keeping at most ``limit`` bytes (the rest is discarded)."""

    def __init__(self, pipe, limit: int) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.start()

    def run(self) -> None:
        try:
            while True:
                chunk = self.pipe.read1(65536)
                if not chunk:
                    break
                if self.size < self.limit:
                    keep = chunk[: self.limit - self.size]
                    self.chunks.append(keep)
                    self.size += len(keep)
                    if len(keep) < len(chunk):
                        self.truncated = True
                else:
                    self.truncated = True
        except (OSError, ValueError):
            pass
        finally:
            try:
                self.pipe.close()
            except OSError:
                pass

    def join(self, timeout: float | None = 5.0) -> None:
        super().join(timeout)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def network_isolation() -> str:
    """What the network looks like from here (the program inherits the grader's namespace)."""
    try:  # /proc/self/net is per network namespace (/sys/class/net is not remounted)
        with open("/proc/self/net/dev", encoding="ascii") as f:
            interfaces = sorted(line.split(":", 1)[0].strip() for line in f.readlines()[2:])
    except OSError:
        return "network: unknown"
    if interfaces == ["lo"]:
        return "network: private namespace with loopback only"
    return "network: NOT isolated (host network; run as root for a private loopback-only namespace)"


def enter_private_network() -> bool:
    """Move this process into a new network namespace with only loopback up (root only).

    Must be called before any thread starts.  Returns True when it worked.
    """
    if not _is_root() or not hasattr(os, "fork"):
        return False
    import ctypes

    CLONE_NEWNET = 0x40000000
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            return False
    except OSError:
        return False
    ip = shutil.which("ip") or "/usr/sbin/ip"
    subprocess.run([ip, "link", "set", "lo", "up"], check=False, capture_output=True)
    return True
