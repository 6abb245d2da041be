"""The runner's sandbox: start a student's program with limits, and always get control back.

Theory of operation.  Each run gets a fresh working directory holding a copy of the submission
(see ``files.py``: no link is followed, nothing but regular files and folders) and is started
in the strongest sandbox this machine permits; the report lists exactly what was enforced
(:meth:`Sandbox.enforced`).

* **sealed** (root and bubblewrap, the normal case on a lab machine, in CI and on Gradescope):
  ``bwrap`` gives the program new PID, IPC, mount and UTS namespaces; its filesystem is the
  working directory (at ``/home/student``), private ``/tmp`` and ``/dev/shm``, and read-only
  ``/usr`` and the few ``/etc`` files an interpreter or compiler reads (no solutions, no other
  student, no grader source, no ``/proc`` of other processes).  Inside, it drops to an
  unprivileged uid of its own (``setpriv``, no capabilities, no new privileges).  Ending the
  run kills the namespace's first process, and the kernel then kills every process in it: a
  fork bomb's children, daemons and ``setsid()`` escapees included; the IPC namespace takes
  System V shared memory with it.  A cgroup (``pids``, ``memory``) bounds the number of tasks
  (threads count, so a JVM starts while a fork bomb stops) and the memory, when one can be made.
* **network**: each run gets its own network namespace with only loopback up
  (:meth:`Sandbox.network`), entered by the grader thread that starts the scripted server and
  the program, so both live in it and nothing else does.
* **fallbacks**: root without bubblewrap keeps the older unshare + setpriv wrapper (private
  /tmp, uid switch, kill by uid); a non-root grader only gets rlimits and a process group.

``start`` returns a :class:`Running` handle, so a program can also be run as a long-lived server
(listening on loopback inside the run's network namespace, reached by clients the grader opens
inside :meth:`Sandbox.network`); ``run`` is ``start`` then ``wait``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import itertools
import os
import shlex
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
#: world-writable directories hidden behind a private tmpfs (fallback wrapper)
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
#: where working directories live when running as root: not world-writable
ROOT_BASE = Path("/run/mailtrace-grade")
#: environment variables the program keeps (everything else is scrubbed)
KEEP_ENV = ("LANG", "LC_ALL", "TZ")
#: where the working directory appears inside the sealed sandbox
INSIDE_HOME = "/home/student"
#: top-level folders shown read-only (what interpreters and compilers are made of)
RO_TOP = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: /etc entries an interpreter, compiler or JVM reads (nothing about the machine's users)
RO_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "ssl", "ca-certificates",
          "mime.types", "java-*", "gcc", "protocols", "services")
CGROUP_V1 = Path("/sys/fs/cgroup")
#: the CFS period of the cpu quota (the kernel's default, 100 ms)
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    timeout: float = 20.0  # wall clock, seconds (the whole run: start to the last process ended)
    cpu_seconds: int = 10
    memory_bytes: int = 4096 * MiB  # RLIMIT_AS: address space (a JVM reserves ~2.5 GiB it never uses)
    resident_bytes: int = 1024 * MiB  # cgroup memory limit (real memory), when there is a cgroup
    file_bytes: int = 16 * MiB  # RLIMIT_FSIZE: largest file the program may write
    processes: int = 256  # tasks (processes AND threads): cgroup pids.max, else RLIMIT_NPROC per uid
    open_files: int = 256
    #: CPUs the run may use at once (cgroup cpu quota): a fork bomb or a busy loop in one run
    #: leaves the other cores to the grader's scripted servers and to the student graded beside it
    cpus: float = 1.0
    output_bytes: int = 64 * 1024  # stdout and stderr are each cut to this size
    build_timeout: float = 60.0  # a Makefile or build.sh, once per submission


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
    cpu_wait_given: float = 0.0  # seconds added to that limit: it was runnable but waited for a CPU
    memory_limited: bool = False  # the cgroup memory limit was hit

    def status_text(self, lang: str = "en") -> str:
        """How the program ended, and which limit it ran into (the report shows this)."""
        from mailtrace.grading.checks import text as msg

        if self.error:
            return msg("status.could-not-start", lang, error=self.error)
        if not self.argv:  # never started (a server skipped: it never listened in another scenario)
            return msg("scenario.not-run", lang)
        if self.timed_out:
            text = msg("status.timeout", lang, seconds=f"{self.limit_seconds:g}")
        elif self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            text = msg("status.signal", lang, name=name) + \
                (f" ({msg('limit.cpu', lang)})" if name == "SIGXCPU" else "")
        else:
            text = msg("status.exit", lang, code=self.exit_code)
        return text + "".join(f" ({note})" for note in self.limit_notes(lang))

    def limit_notes(self, lang: str = "en") -> list[str]:
        from mailtrace.grading.checks import text as msg

        err = self.stderr[-4000:]
        notes = []
        if b"MemoryError" in err or self.memory_limited:
            notes.append("memory")
        if b"Resource temporarily unavailable" in err or b"BlockingIOError" in err and b"fork" in err:
            notes.append("processes")
        if b"Network is unreachable" in err or b"ENETUNREACH" in err:
            notes.append("network")
        if b"File too large" in err:
            notes.append("file-size")
        if self.truncated:
            notes.append("output")
        return [msg(f"limit.{key}", lang) for key in notes]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# -- cgroups -------------------------------------------------------------------------------------
class Cgroup:
    """A cgroup per run in each controller we may write (``pids``, ``memory``; v1 or v2).

    ``procs`` are the ``cgroup.procs`` files a process writes its pid into before exec;
    ``kill`` ends every task left in it; ``close`` removes it."""

    def __init__(self, name: str, limits: Limits, group: str = "") -> None:
        self.dirs: list[Path] = []
        self.controllers: list[str] = []
        for controller, path, settings in _cgroup_targets(name, limits):
            if group:  # inside the submission's cgroup: its quota covers every run at once
                path = _group_dir(path.parent, group, controller, limits) / name
            try:
                path.mkdir(parents=False, exist_ok=False)
            except OSError:
                continue
            try:
                for key, value in settings:
                    (path / key).write_text(str(value))
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            self.dirs.append(path)
            self.controllers.append(controller)

    @property
    def procs(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def memory_hit(self) -> bool:
        for d in self.dirs:
            for name in ("memory.failcnt", "memory.events"):
                try:
                    text = (d / name).read_text()
                except OSError:
                    continue
                if name == "memory.failcnt" and text.strip() not in ("", "0"):
                    return True
                if name == "memory.events" and any(l.split()[:1] == ["oom_kill"] and l.split()[1] != "0"
                                                   for l in text.splitlines() if len(l.split()) == 2):
                    return True
        return False

    def kill(self, wait: float = 5.0) -> bool:
        """SIGKILL every task until the cgroup is empty (bounded); True when it is."""
        deadline = time.monotonic() + wait
        pause = 0.001  # the namespace's last tasks are usually gone within a few ms: back off from 1 ms
        while True:
            pids = set()
            for d in self.dirs:
                kill_file = d / "cgroup.kill"  # v2: the kernel does it atomically
                if kill_file.exists():
                    with contextlib.suppress(OSError):
                        kill_file.write_text("1")
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def close(self) -> None:
        self.kill()
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # its last tasks are still exiting (a fork bomb's): removed later
                _LINGERING.add(d)
        _remove_lingering()


def _group_dir(parent: Path, group: str, controller: str, limits: Limits) -> Path:
    """The submission's cgroup under ``parent`` (made once): in the cpu controller it holds the CPU
    quota of all its runs together, so scenarios graded at once (a fork bomb in each) still get
    ``limits.cpus`` between them, and the other students of a class keep the rest."""
    path = parent / group
    if not path.exists():
        with contextlib.suppress(OSError):
            path.mkdir()
            if "cpu" in controller:
                quota = int(CPU_PERIOD_US * limits.cpus)
                if (path / "cpu.max").exists():
                    (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
                else:
                    (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                    (path / "cpu.cfs_quota_us").write_text(str(quota))
            if (path / "cgroup.subtree_control").exists():  # v2: hand the controllers down
                (path / "cgroup.subtree_control").write_text(
                    " ".join(f"+{c}" for c in controller.split("+")))
    return path


def remove_group(group: str) -> None:
    """Remove a submission's cgroups (its runs' are gone by then; retried later if not)."""
    if not group:
        return
    for parent in {p.parent for _, p, _ in _cgroup_targets("x", Limits())}:
        d = parent / group
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            _LINGERING.add(d)


#: cgroups whose last tasks were still exiting when their run closed them
_LINGERING: set[Path] = set()


_groups = itertools.count(1)


def new_group() -> str:
    """A name for one submission's cgroup (``remove_group`` when it is graded)."""
    return f"sub-{os.getpid()}-{next(_groups)}"


def _remove_lingering() -> None:
    for d in list(_LINGERING):
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            continue
        _LINGERING.discard(d)


def _sweep_stale(parent: Path) -> None:
    """Remove the empty cgroups a grader that is gone left behind (killed, or its run's tasks
    outlived it by a moment): ``run-PID-...`` and ``probe-PID`` whose PID no longer exists."""
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            name = child.name.split("-")
            if len(name) < 2 or name[0] not in ("run", "probe", "sub") or not name[1].isdigit():
                continue
            if int(name[1]) == os.getpid() or os.path.exists(f"/proc/{name[1]}"):
                continue
            for inner in (child.iterdir() if name[0] == "sub" else ()):
                if inner.is_dir():
                    with contextlib.suppress(OSError):
                        inner.rmdir()
            with contextlib.suppress(OSError):
                child.rmdir()  # refused while it still has tasks


@functools.cache
def _sweep_stale_folders(base: Path) -> None:
    """Once per grader: remove the working and /etc folders (``run-PID-...``, ``etc-PID-...``)
    that a grader that is gone left in ``base`` (killed with SIGKILL, or the machine's power cut
    mid-class): nothing a run made outlives it, even when its grader could not clean up."""
    from mailtrace.grading.files import remove_tree

    with contextlib.suppress(OSError):
        for child in base.iterdir():
            name = child.name.split("-")
            if len(name) < 3 or name[0] not in ("run", "etc") or not name[1].isdigit():
                continue
            if int(name[1]) == os.getpid() or os.path.exists(f"/proc/{name[1]}"):
                continue  # (a live grader's, or a reused PID's: kept, the safe side)
            with contextlib.suppress(OSError):
                if child.is_dir() and not child.is_symlink():
                    remove_tree(child)


def _cleanup_at_exit() -> None:
    deadline = time.monotonic() + 5
    while _LINGERING and time.monotonic() < deadline:
        _remove_lingering()
        if _LINGERING:
            time.sleep(0.05)


atexit.register(_cleanup_at_exit)


def _cgroup_targets(name: str, limits: Limits):
    """(controller, new cgroup path, [(file, value)]) for every controller we can use."""
    pids = [("pids.max", limits.processes)]
    quota = int(CPU_PERIOD_US * limits.cpus)
    v2 = CGROUP_V1 / "cgroup.controllers"
    if v2.exists():
        parent = _v2_parent()
        if parent is not None:
            settings = pids + [("memory.max", limits.resident_bytes)]
            controllers = "pids+memory"
            if "cpu" in (parent / "cgroup.subtree_control").read_text().split():
                settings.append(("cpu.max", f"{quota} {CPU_PERIOD_US}"))
                controllers += "+cpu"
            yield controllers, parent / name, settings
        return
    if (CGROUP_V1 / "pids" / "cgroup.procs").exists():
        yield "pids", _v1_parent("pids") / name, pids
    if (CGROUP_V1 / "memory" / "cgroup.procs").exists():
        yield "memory", _v1_parent("memory") / name, [("memory.limit_in_bytes", limits.resident_bytes)]
    if (CGROUP_V1 / "cpu" / "cpu.cfs_quota_us").exists():
        yield "cpu", _v1_parent("cpu") / name, [("cpu.cfs_period_us", CPU_PERIOD_US), ("cpu.cfs_quota_us", quota)]


@functools.cache
def _v1_parent(controller: str) -> Path:
    parent = CGROUP_V1 / controller / "mailtrace-grade"
    with contextlib.suppress(OSError):
        parent.mkdir(exist_ok=True)
    _sweep_stale(parent)
    return parent


@functools.cache
def _v2_parent() -> Path | None:
    """A v2 subtree with pids and memory delegated, or None (the root's "no internal processes"
    rule refuses it where the grader itself sits in a leaf)."""
    try:
        own = next(l[3:] for l in Path("/proc/self/cgroup").read_text().splitlines() if l.startswith("0::"))
        base = CGROUP_V1 / own.lstrip("/")
        parent = base / "mailtrace-grade"
        parent.mkdir(exist_ok=True)
        (base / "cgroup.subtree_control").write_text("+pids +memory")
        (parent / "cgroup.subtree_control").write_text("+pids +memory")
        with contextlib.suppress(OSError):  # the cpu quota where cpu is delegated too
            (base / "cgroup.subtree_control").write_text("+cpu")
            (parent / "cgroup.subtree_control").write_text("+cpu")
        _sweep_stale(parent)
        return parent
    except (OSError, StopIteration):
        return None


_CGROUPS_PROBED: list[tuple[str, ...]] = []  # the answer, once found
_CGROUPS_LOCK = threading.Lock()


def cgroups_available() -> tuple[str, ...]:
    """Which cgroup controllers a run gets here (asked once, by one thread: two sandboxes built at
    once each made the same probe cgroup, and the one whose mkdir lost ran without any limits)."""
    with _CGROUPS_LOCK:
        if not _CGROUPS_PROBED:
            probe = Cgroup(f"probe-{os.getpid()}-{threading.get_ident()}", Limits())
            _CGROUPS_PROBED.append(tuple(probe.controllers))
            probe.close()
        return _CGROUPS_PROBED[0]


# -- network ------------------------------------------------------------------------------------
CLONE_NEWNET = 0x40000000


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2 (SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING, b""))


@contextlib.contextmanager
def private_network():
    """Run the block (this thread only) in a new network namespace with only loopback up.

    Sockets opened in the block, and processes started from it, belong to that namespace for
    the rest of their lives; the thread returns to its old namespace at the end.  Yields True
    when it worked (root), False otherwise (the block then runs in the grader's namespace).
    """
    orig = None
    entered = False
    if _is_root() and os.path.exists("/proc/thread-self/ns/net"):
        try:
            orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            libc = _libc()
            if libc.unshare(CLONE_NEWNET) == 0:
                entered = True
                _loopback_up()
        except OSError:
            pass
    try:
        yield entered
    finally:
        if entered and _libc().setns(orig, CLONE_NEWNET) != 0:  # pragma: no cover - kernel refused
            raise OSError("cannot return to the grader's network namespace")
        if orig is not None:
            os.close(orig)


@dataclass
class Sandbox:
    limits: Limits = field(default_factory=Limits)
    slot: int = 0  # parallel slot: each gets its own uid
    isolate: bool | None = None  # None: when root and the tools are there
    sealed: bool | None = None  # bubblewrap namespaces; None: when root and bwrap works here
    lang: str = "en"  # the language of what it reports (enforced(), status texts)
    group: str = ""  # the submission's cgroup (see new_group): one CPU quota for all its runs

    def __post_init__(self) -> None:
        tools = all(shutil.which(t) for t in ("setpriv", "prlimit"))
        if self.isolate is None:  # root, and allowed to switch uid (not so in every container)
            self.isolate = _is_root() and tools and _works("setpriv", "--reuid=65534", "--regid=65534",
                                                            "--clear-groups", "true")
        if self.sealed is None:
            self.sealed = bool(self.isolate) and bwrap_works()
        self.sealed = bool(self.sealed and self.isolate)
        # a private /tmp needs a mount namespace: refused in unprivileged containers (Docker)
        self.private_tmp = bool(self.isolate and (self.sealed or (
            shutil.which("unshare") and os.path.exists("/bin/sh")
            and _works("unshare", "--mount", "--propagation", "private", "true"))))
        self.prlimit = shutil.which("prlimit")
        block = SANDBOX_UID_BASE + (os.getpid() % 100000) * SLOTS_PER_PROCESS
        self.uid = block + self.slot % SLOTS_PER_PROCESS if self.isolate else os.getuid()
        self.cgroups = cgroups_available() if self.isolate else ()
        self.net_private = False  # set by network(): this run has its own namespace

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
                    self.private_tmp = self.sealed
            if base is not None:
                _sweep_stale_folders(base)
            # named after this grader's PID, so that a later grader can tell it was left behind
            path = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base))
            # sealed: bwrap (root without capabilities) must enter it; no other run can see it
            os.chmod(path, 0o711 if self.sealed else 0o700)
            os.chown(path, self.uid, self.uid)
        else:
            path = Path(tempfile.mkdtemp(prefix="mailtrace-run-"))
        return path

    def give(self, path: Path) -> None:
        """Hand a tree inside the working directory to the program's uid (links not followed)."""
        if not self.isolate:
            return
        from mailtrace.grading.files import Bounds, walk

        os.chown(path, self.uid, self.uid, follow_symlinks=False)
        for rel, st in walk(path, Bounds(max_depth=64), skip_hidden=False):
            if rel is not None:
                os.chown(os.path.join(path, rel), self.uid, self.uid, follow_symlinks=False)

    def remove_workdir(self, path: Path) -> None:
        from mailtrace.grading.files import remove_tree

        remove_tree(path)

    def inside(self, workdir: Path) -> str:
        """The working directory as the program sees it."""
        return INSIDE_HOME if self.sealed else str(workdir)

    # -- python ----------------------------------------------------------------------------
    def python(self) -> str:
        """The interpreter students' programs run with (one the sandbox uid may execute)."""
        if self.isolate:
            for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
                if os.access(candidate, os.X_OK):
                    return candidate
        return sys.executable

    @contextlib.contextmanager
    def network(self):
        """A private loopback-only network namespace for one run (see :func:`private_network`):
        start the scripted server (or, for a server exercise, open the grader's client sockets)
        and the program inside this block."""
        with private_network() as entered:
            self.net_private = entered
            yield entered

    def enforced(self) -> tuple[str, ...]:
        """What this sandbox enforces, in its language (the report's last lines)."""
        from mailtrace.grading.checks import text as msg

        lim, lang = self.limits, self.lang
        tasks = (msg("sandbox.tasks-cgroup", lang, n=lim.processes) if "pids" in "".join(self.cgroups)
                 else msg("sandbox.tasks-rlimit", lang, n=lim.processes))
        memory = msg("sandbox.memory", lang, mib=lim.memory_bytes // MiB)
        if "memory" in "".join(self.cgroups):
            memory += msg("sandbox.memory-cgroup", lang, mib=lim.resident_bytes // MiB)
        if "cpu" in "".join(self.cgroups):
            memory += msg("sandbox.cpus-cgroup", lang, cpus=f"{lim.cpus:g}")
        out = [msg("sandbox.timeout", lang, seconds=f"{lim.timeout:g}"),
               msg("sandbox.limits", lang, cpu=lim.cpu_seconds, memory=memory, files=lim.file_bytes // MiB,
                   tasks=tasks, open=lim.open_files),
               msg("sandbox.copy", lang),
               msg("sandbox.output", lang, kib=lim.output_bytes // 1024)]
        if self.sealed:
            out.append(msg("sandbox.sealed", lang, uid=self.uid))
        elif self.isolate:
            out.append(msg("sandbox.uid", lang, uid=self.uid,
                           tmp=msg("sandbox.private-tmp" if self.private_tmp else "sandbox.shared-tmp", lang)))
        else:
            out.append(msg("sandbox.none", lang))
        out.append(msg("sandbox.net-private", lang) if self.net_private else network_isolation(lang))
        return tuple(out)

    # -- running ---------------------------------------------------------------------------
    def _rlimits(self) -> list[str]:
        lim = self.limits
        out = [f"--cpu={lim.cpu_seconds}", f"--as={lim.memory_bytes}", f"--fsize={lim.file_bytes}",
               f"--nofile={lim.open_files}", "--core=0"]
        if not (self.isolate and "pids" in "".join(self.cgroups)):
            out.append(f"--nproc={lim.processes}")
        return out

    def command(self, argv: list[str], workdir: Path | None = None, cgroup: Cgroup | None = None,
                args_fd: int | None = None) -> list[str]:
        """The command line that starts ``argv`` sandboxed.  With ``args_fd`` (sealed), bwrap reads
        its own options from that descriptor, so the program's /proc/1/cmdline shows no host path."""
        limits = self._rlimits()
        if not self.isolate:
            if self.prlimit:
                return [self.prlimit, *limits, "--", *argv]
            return argv
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--no-new-privs",
                "--", *argv]
        if self.sealed:
            bwrap = ["bwrap", "--args", str(args_fd)] if args_fd is not None else self._bwrap(workdir)
            inner = ["prlimit", *limits, "--", *bwrap, "--", *drop]
        elif not self.private_tmp:
            inner = ["prlimit", *limits, "--", *drop]
        else:
            mounts = " ".join(d for d in WORLD_WRITABLE if os.path.isdir(d))
            script = (f'for d in {mounts}; do mount -t tmpfs -o size=8m,mode=1777 tmpfs "$d" 2>/dev/null; done; '
                      'exec "$@"')
            inner = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
                     "prlimit", *limits, "--", *drop]
        if cgroup is not None and cgroup.procs:
            # enter the run's cgroups before anything forks: every task is counted from the start
            files = " ".join(shlex.quote(p) for p in cgroup.procs)
            enter = f'for f in {files}; do echo $$ > "$f" || exit 125; done; exec "$@"'
            return ["/bin/sh", "-c", enter, "sh", *inner]
        return inner

    def bwrap_options(self, workdir: Path | None) -> list[str]:
        args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session",
                "--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/home"]
        for top in RO_TOP:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for pattern in RO_ETC:
            for path in sorted(glob.glob(os.path.join("/etc", pattern))):
                args += ["--ro-bind", path, path]
        for name, path in _sandbox_etc(self.uid).items():
            args += ["--ro-bind", str(path), f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(64 * MiB), "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", str(64 * MiB), "--tmpfs", "/dev/shm",
                 "--perms", "1777", "--tmpfs", "/var/tmp"]
        if workdir is not None:
            args += ["--bind", str(workdir), INSIDE_HOME, "--chdir", INSIDE_HOME]
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args

    def _bwrap(self, workdir: Path | None) -> list[str]:
        return ["bwrap", *self.bwrap_options(workdir)]

    def env(self, workdir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
        home = self.inside(workdir)
        env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if self.sealed else home,
                    "USER": "student", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
                    "PYTHONUNBUFFERED": "1",
                    # glibc reserves 64 MiB of address space per malloc arena (up to 8 per core):
                    # under the address-space limit a JVM's threads ran out of it (javac, "Not
                    # enough space"); two arenas cost nothing to a student's program
                    "MALLOC_ARENA_MAX": "2"})
        env.setdefault("LANG", "C.UTF-8")
        return env

    def start(self, argv: list[str], workdir: Path, timeout: float | None = None) -> "Running":
        """Start ``argv`` in ``workdir``; the handle waits, stops, and gives the result."""
        return Running(self, argv, workdir, self.limits.timeout if timeout is None else timeout)

    def run(self, argv: list[str], workdir: Path, timeout: float | None = None) -> ProgramResult:
        return self.start(argv, workdir, timeout).wait()


# -- time waited for a CPU --------------------------------------------------------------------------
#: the wall-clock limit does not count the time a program was ready to run but waited for a CPU
#: (a busy machine: a class graded at once, a loaded CI runner), up to this many times the limit.
#: A program that waits on the network or sleeps gets nothing: on an idle machine and on a busy
#: one it is stopped at the same point of its own run, so the same program earns the same score.
MAX_CPU_WAIT_FACTOR = 3.0
#: extensions shorter than this are not worth a new timer
MIN_EXTENSION = 0.05
#: a program runnable at its limit that hardly ran since the last look waits for a CPU right now:
#: look again this much later
RECHECK = 0.1


def _process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (read from /proc; empty where there is none).

    Each process's ``/proc/PID/task/TID/children`` names its children, so the walk reads a few
    files per process of the tree; only a kernel without them makes it read every process's
    ``stat`` (hundreds of files: a grader reading them for each of a class's runs spent most of
    its time taking the interpreter lock back after each read)."""
    if not _has_children_files():
        return _process_tree_by_scan(root)
    tree, todo = [], [root]
    while todo and len(tree) < 100_000:
        pid = todo.pop()
        tree.append(pid)
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError, ValueError):
                    with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                        todo += [int(child) for child in f.read().split()]
    return tree


@functools.lru_cache(maxsize=1)
def _has_children_files() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")  # CONFIG_PROC_CHILDREN


def _process_tree_by_scan(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    tree, todo = [], [root]
    while todo and len(tree) < 100_000:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def cpu_use(pids: list[int]) -> tuple[float, float, bool]:
    """For the threads of ``pids``: (seconds on a CPU, seconds runnable but waiting for one, is one
    runnable now).  The first two are /proc/PID/task/TID/schedstat (nanoseconds; a wait is added
    when it ends, so a thread waiting now is not counted yet: hence the third); zeros where the
    kernel does not keep them."""
    ran = waited = 0
    runnable = False
    for pid in pids:
        for task in glob.glob(f"/proc/{pid}/task/*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(task, "schedstat").read_text().split()
                ran, waited = ran + int(fields[0]), waited + int(fields[1])
                stat = Path(task, "stat").read_text()
                runnable = runnable or stat[stat.rfind(")") + 2] == "R"
    return ran / 1e9, waited / 1e9, runnable


#: The programs running now, and whether grading was stopped (Ctrl-C): ``stop_all`` ends them,
#: and no program starts after it.
_RUNNING: set["Running"] = set()
_RUNNING_LOCK = threading.Lock()
_STOPPED = threading.Event()


def stop_all() -> None:
    """Ctrl-C: end every program running now (and all they started); start none after this."""
    _STOPPED.set()
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for run in running:
        run.stop()


class Running:
    """One started program: its output read as it comes, a timer that ends it at the limit (plus
    the time it waited for a CPU, see MAX_CPU_WAIT_FACTOR)."""

    def __init__(self, sandbox: Sandbox, argv: list[str], workdir: Path, timeout: float) -> None:
        self.sandbox = sandbox
        self.argv = argv
        self.timeout = timeout
        self.started = time.monotonic()
        self.cgroup = Cgroup(f"run-{os.getpid()}-{threading.get_ident()}-{id(self)}", sandbox.limits,
                             sandbox.group) \
            if sandbox.isolate and sandbox.cgroups else None
        self.error = ""
        self.proc = None
        self.fired = threading.Event()
        self.granted = 0.0  # seconds added to the limit for time spent waiting for a CPU
        self._last_look = (time.monotonic(), 0.0)  # (when, CPU seconds used by then)
        self._timer_lock = threading.Lock()
        self._ended = False
        lim = sandbox.limits
        preexec = None if (sandbox.isolate or sandbox.prlimit) else _set_limits(lim)
        args_fd = None
        if sandbox.sealed:
            options = "\0".join(sandbox.bwrap_options(workdir)).encode() + b"\0"
            args_fd, w = os.pipe()
            os.write(w, options)  # a few KiB: well within a pipe's buffer
            os.close(w)
        try:
            if _STOPPED.is_set():
                raise OSError("grading was stopped")
            self.proc = subprocess.Popen(sandbox.command(argv, workdir, self.cgroup, args_fd), cwd=workdir,
                                         env=sandbox.env(workdir), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         **NEW_PROCESS_GROUP, preexec_fn=preexec, close_fds=True,
                                         pass_fds=(args_fd,) if args_fd is not None else ())
        except OSError as exc:
            self.error = str(exc)
            if self.cgroup is not None:
                self.cgroup.close()
            return
        finally:
            if args_fd is not None:
                os.close(args_fd)
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        if _STOPPED.is_set():  # stopped while it was starting
            self.stop()
        self.out = _Capture(self.proc.stdout, lim.output_bytes)
        self.err = _Capture(self.proc.stderr, lim.output_bytes)
        # a blocking wait (waitpid) returns the moment the program exits; a timer kills it
        self.timer = threading.Timer(max(0.0, timeout), self._on_timeout)
        self.timer.daemon = True
        self.timer.start()

    def pids(self) -> list[int]:
        """The program's processes now (its first process and all it started)."""
        return _process_tree(self.proc.pid) if self.proc is not None else []

    def _on_timeout(self) -> None:
        with self._timer_lock:
            if self._ended:
                return
            cap = MAX_CPU_WAIT_FACTOR * self.timeout
            ran, waited, runnable = cpu_use(_process_tree(self.proc.pid))
            (then, ran_then), now = self._last_look, time.monotonic()
            self._last_look = (now, ran)
            extra = min(waited, cap) - self.granted  # it was kept from running: give that time back
            if extra < MIN_EXTENSION and runnable and ran - ran_then < (now - then) / 2:
                extra = min(RECHECK, cap - self.granted)  # waiting for a CPU right now
            if extra >= MIN_EXTENSION:
                self.granted += extra
                self.timer = threading.Timer(extra, self._on_timeout)
                self.timer.daemon = True
                self.timer.start()
                return
            self.fired.set()
        self.stop()

    def stop(self) -> None:
        """End the program and everything it started."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # bwrap's first process: the kernel ends its PID namespace
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self.sandbox.isolate and not self.sandbox.sealed:
            _kill_uid(self.sandbox.uid)

    def wait(self) -> ProgramResult:
        sb = self.sandbox
        if self.proc is None:
            return ProgramResult(argv=self.argv, exit_code=None, error=self.error, enforced=sb.enforced())
        self.proc.wait()
        with self._timer_lock:
            self._ended = True
            self.timer.cancel()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        timed_out = self.fired.is_set()
        self.stop()  # what the program left running (a daemon, a fork bomb's children) ends now
        self.out.join()
        self.err.join()
        code = self.proc.returncode
        sig = None
        if code is not None and code < 0:
            sig, code = -code, None
        if timed_out:
            sig, code = signal.SIGKILL, None
        memory = False
        if self.cgroup is not None:
            memory = self.cgroup.memory_hit()
            self.cgroup.close()
        if sb.sealed and code is not None and code > 128 and sig is None and not timed_out:
            # bwrap reports a signal death of the program as 128+N
            with contextlib.suppress(ValueError):
                sig, code = signal.Signals(code - 128).value, None
        return ProgramResult(argv=self.argv, exit_code=code, signal=sig, timed_out=timed_out,
                             stdout=self.out.data, stderr=self.err.data,
                             truncated=self.out.truncated or self.err.truncated,
                             duration=time.monotonic() - self.started, enforced=sb.enforced(),
                             limit_seconds=self.timeout, cpu_wait_given=self.granted, memory_limited=memory)


@functools.cache
def _works(*argv: str) -> bool:
    """Does this command succeed here? (asked once per process)"""
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def bwrap_works() -> bool:
    """bubblewrap is installed and may create namespaces here (not in every container)."""
    if not shutil.which("bwrap"):
        return False
    return _works("bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
                  "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true")


@functools.cache
def _sandbox_etc(uid: int) -> dict[str, Path]:
    """Small /etc files of our own: the sandbox user, localhost, and nothing about the machine."""
    base = ROOT_BASE if _is_root() else Path(tempfile.gettempdir())
    base.mkdir(mode=0o711, parents=True, exist_ok=True)
    folder = base / f"etc-{os.getpid()}-{uid}"
    folder.mkdir(exist_ok=True)
    import atexit

    atexit.register(shutil.rmtree, folder, True)  # the grader's own files: gone when it exits
    files = {"passwd": f"root:x:0:0:root:/root:/bin/sh\nstudent:x:{uid}:{uid}:student:{INSIDE_HOME}:/bin/sh\n",
             "group": f"root:x:0:\nstudent:x:{uid}:\n",
             "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n",
             "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
             "hostname": "sandbox\n"}
    out = {}
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        os.chmod(path, 0o644)
        out[name] = path
    return out


def _kill_uid(uid: int) -> None:
    """Kill the processes left running as the sandbox uid (the fallback without namespaces)."""
    for _ in range(3):  # a fork bomb re-forks between the listing and the kill: a few passes
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
        if not found:
            return


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


def network_isolation(lang: str = "en") -> str:
    """What the network looks like from here (the program inherits the grader's namespace)."""
    from mailtrace.grading.checks import text as msg

    try:  # /proc/self/net is per network namespace (/sys/class/net is not remounted)
        with open("/proc/self/net/dev", encoding="ascii") as f:
            interfaces = sorted(line.split(":", 1)[0].strip() for line in f.readlines()[2:])
    except OSError:
        return msg("sandbox.net-unknown", lang)
    if interfaces == ["lo"]:
        return msg("sandbox.net-private", lang)
    return msg("sandbox.net-host", lang)


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
