"""The sealed sandbox against hostile submissions, one test per case of issue #13, run as root as
CI runs (they skip, with the reason, where the sandbox cannot be sealed).

Each hostile program is graded for real (``grade()`` on mime-compose's ``text-only`` scenario,
which needs no network) and prints what it managed to see; the test asserts both that the grade
completed and that nothing leaked or survived.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailtrace.grading import classroom
from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.files import remove_tree
from mailtrace.grading.grader import grade
from mailtrace.grading.report import to_json, to_junit
from mailtrace.grading.sandbox import ROOT_BASE, SANDBOX_UID_BASE, SLOTS_PER_PROCESS, Limits, Sandbox, bwrap_works

ROOT = Path(__file__).resolve().parents[2]
MIME = ROOT / "solutions" / "mime-compose" / "mime_compose.py"

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "geteuid") and os.geteuid() == 0 and bwrap_works()),
    reason="the sealed sandbox needs root and bubblewrap (Debian package bubblewrap)")


def run(tmp_path: Path, source: str, *, timeout: float = 8, files: dict | None = None, name="mime_compose.py"):
    """Grade a hostile program (a folder with the program and ``files``); the text-only scenario."""
    folder = tmp_path / "submission"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))
    for rel, content in (files or {}).items():
        (folder / rel).write_text(content)
    report = grade(load_exercise("mime-compose"), folder, scenarios=["text-only"], seed=7, jobs=1,
                   limits=Limits(timeout=timeout, cpu_seconds=int(timeout)))
    return report, report.scenarios[-1]


def our_uids() -> range:
    block = SANDBOX_UID_BASE + (os.getpid() % 100000) * SLOTS_PER_PROCESS
    return range(block, block + SLOTS_PER_PROCESS)


def alive_sandbox_processes() -> list[str]:
    uids = our_uids()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid not in uids:
                continue
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state not in "ZX":  # the dead wait only to be reaped
            out.append(pid)
    return out


def leftover_workdirs() -> list[str]:
    uids = our_uids()
    try:
        return [p.name for p in ROOT_BASE.iterdir() if p.name.startswith("run-") and p.stat().st_uid in uids]
    except OSError:
        return []


def test_the_report_says_the_run_was_sealed(tmp_path):
    report, sc = run(tmp_path, "print('hello')\n")
    assert any(e.startswith("sealed (bubblewrap): new PID, IPC, mount and UTS namespaces") for e in report.enforced)
    assert "network: private namespace with loopback only" in report.enforced
    assert "tasks (cgroup pids.max" in " ".join(report.enforced) or "RLIMIT_NPROC" in " ".join(report.enforced)


def test_a_fork_bomb_ends_with_its_run(tmp_path):
    report, sc = run(tmp_path, """
        import os, time
        while True:
            try:
                if os.fork() == 0:
                    os.setsid()  # try to leave the process group too
            except OSError:
                time.sleep(0.01)
        """, timeout=3)
    assert "killed" in sc.status
    assert not alive_sandbox_processes()
    time.sleep(0.5)  # a process that re-forked after the kill would show up now
    assert not alive_sandbox_processes()


def test_a_link_to_etc_shadow_is_refused_and_reported(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "leak").symlink_to("/etc/shadow")
    (folder / "inside").symlink_to("mime_compose.py")  # a link that stays inside is kept
    report, sc = run(tmp_path, """
        import os
        for name in ("leak", "/etc/shadow", "inside"):
            try:
                print(name, "READ", len(open(name).read()))
            except OSError as e:
                print(name, "BLOCKED", e.errno)
        """)
    assert any("leak" in n and "/etc/shadow" in n and "refused" in n for n in report.notes), report.notes
    assert "leak BLOCKED" in sc.stdout and "/etc/shadow BLOCKED" in sc.stdout
    assert "inside READ" in sc.stdout


def test_a_fifo_left_by_the_program_cannot_hang_the_grader(tmp_path):
    report, sc = run(tmp_path, """
        import os
        os.mkfifo("trap")
        os.mkfifo("message.eml")
        """)
    assert sc.status.startswith("exit status 0")
    assert any("trap" in n and "FIFO" in n for n in sc.notes), sc.notes
    assert not leftover_workdirs()


def test_a_fifo_in_the_submission_is_refused(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    report, sc = run(tmp_path, "print('ok')\n")
    assert any("pipe" in n and "refused" in n for n in report.notes), report.notes


def test_solutions_grader_source_and_other_students_are_invisible(tmp_path):
    secret = tmp_path / "class" / "bob" / "mime_compose.py"
    secret.parent.mkdir(parents=True)
    secret.write_text("# bob's work: SECRET-BOB\n")
    ana = tmp_path / "class" / "ana"
    ana.mkdir()
    targets = [str(MIME), str(ROOT / "mailtrace" / "grading" / "grader.py"), str(secret), "../bob/mime_compose.py",
               "/work", str(Path.home())]
    (ana / "mime_compose.py").write_text(textwrap.dedent(f"""
        for path in {targets!r}:
            try:
                data = open(path).read()
                print("READ", path, data[:40].replace(chr(10), " "))
            except IsADirectoryError:
                print("DIR", path)
            except OSError as e:
                print("BLOCKED", path, e.errno)
        """))
    results = classroom.grade_class(load_exercise("mime-compose"), tmp_path / "class", seed=1, jobs=1,
                                    scenarios=["text-only"])
    out = dict(results)["ana"].scenarios[-1].stdout
    assert "READ" not in out and "DIR" not in out, out
    assert out.count("BLOCKED") == len(targets)


def test_proc_shows_neither_the_grader_nor_its_command_line(tmp_path):
    report, sc = run(tmp_path, """
        import os
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        lines = [open(f"/proc/{p}/cmdline", "rb").read().replace(b"\\0", b" ").decode() for p in pids]
        print(len(pids), "processes")
        print("|".join(lines))
        """)
    assert "pytest" not in sc.stdout and "mailtrace" not in sc.stdout.split("processes", 1)[1]
    assert int(sc.stdout.split()[0]) <= 3  # bwrap's init, (setpriv's exec of) the program


def test_system_v_shared_memory_does_not_outlive_the_run(tmp_path):
    key = 0x4D540000 + os.getpid() % 0xFFFF
    report, sc = run(tmp_path, f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget({key}, 4096, 0o1000 | 0o666)  # IPC_CREAT
        print("shmid", shmid, ctypes.get_errno())
        """)
    assert "shmid -1" not in sc.stdout, sc.stdout  # it was created (inside its IPC namespace)
    with open("/proc/sysvipc/shm") as f:
        keys = [int(line.split()[0]) for line in f.readlines()[1:]]
    assert key not in keys


def _deep_tree(top: Path, depth: int) -> None:
    """mkdir d/d/d/... ``depth`` levels with directory descriptors (no path is that long)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)


def test_a_3000_deep_tree_in_the_submission_is_cut_and_reported(tmp_path):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "mime_compose.py").write_text(MIME.read_text())
    _deep_tree(folder, 3000)
    ex = load_exercise("mime-compose")
    try:
        report = grade(ex, folder, scenarios=["text-only"], seed=7, jobs=1)
    finally:
        remove_tree(folder / "d")  # pytest's own clean-up of tmp_path would recurse
    plain = grade(ex, MIME, scenarios=["text-only"], seed=7, jobs=1)
    assert report.score == plain.score == plain.max_score  # the tree costs nothing, and breaks nothing
    assert any("deeper than" in n for n in report.notes), report.notes
    assert not leftover_workdirs()


def test_a_3000_deep_tree_made_by_the_program_is_collected_and_removed(tmp_path):
    report, sc = run(tmp_path, """
        import os
        fd = os.open(".", os.O_RDONLY)
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        print("made")
        """)
    assert "made" in sc.stdout and sc.status.startswith("exit status 0")
    assert any("deeper than" in n for n in sc.notes)
    assert not leftover_workdirs()


def test_reports_stay_valid_whatever_bytes_the_program_prints(tmp_path):
    report, sc = run(tmp_path, """
        import sys
        sys.stderr.buffer.write(b"\\x1b[31mred\\x07 bell \\x00 nul \\xff\\xfe bad utf-8 ]]> </system-err> &amp;\\n")
        sys.stdout.buffer.write(b"\\x1b]0;title\\x07\\x0c")
        sys.exit(1)
        """)
    root = ET.fromstring(to_junit(report))  # parses: valid XML
    err = "".join(e.text or "" for e in root.iter("system-err"))
    assert "\\x1b[31mred\\x07" in err and "</system-err>" in err
    assert json.loads(to_json(report))["scenarios"][-1]["stderr"].startswith("\x1b[31mred")
    out = tmp_path / "class"
    out.mkdir()
    classroom.write_csv(out / "g.csv", load_exercise("mime-compose"), [("ana", report)])
    assert list(csv.reader(io.StringIO((out / "g.csv").read_text())))[1][0] == "ana"
    classroom.write_html(out / "r.html", load_exercise("mime-compose"), [("ana", report)], 1)
    page = (out / "r.html").read_text()
    assert "\x1b" not in page and "\x07" not in page and "\x00" not in page


def test_a_jvm_starts_under_the_limits_that_contain_a_fork_bomb(tmp_path):
    import shutil

    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK (Debian package default-jdk-headless)")
    sb = Sandbox(Limits(timeout=60, cpu_seconds=60))
    wd = sb.make_workdir()
    try:
        (wd / "Threads.java").write_text(
            "public class Threads { public static void main(String[] a) throws Exception {"
            " Thread[] t = new Thread[40]; for (int i = 0; i < 40; i++) { t[i] = new Thread(() -> {}); t[i].start(); }"
            " for (Thread x : t) x.join(); System.out.println(\"started \" + t.length); } }")
        sb.give(wd)
        assert sb.run(["javac", "Threads.java"], wd).exit_code == 0
        r = sb.run(["java", "-cp", ".", "Threads"], wd)
        assert r.exit_code == 0 and r.stdout == b"started 40\n", r.stderr
    finally:
        sb.remove_workdir(wd)


def test_one_scenario_is_bounded_by_one_wall_clock(tmp_path):
    """A program that ignores SIGTERM and sleeps for an hour is ended at its limit (the class goes on)."""
    report, sc = run(tmp_path, """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
        """, timeout=1)
    assert sc.status.startswith("killed: still running after 1 s")
    assert sc.duration < 3600


def _cpu_controller_here() -> bool:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        return "cpu" in v2.read_text().split()
    return Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()


@pytest.mark.skipif(not _cpu_controller_here(), reason="no cgroup cpu controller on this machine")
def test_a_run_gets_a_cpu_quota_so_a_fork_bomb_cannot_starve_its_neighbour():
    """A fork bomb graded beside a correct C client starved it (and the grader's scripted server):
    the C client never connected within 8 s and lost 11 points.  Each run's cgroup now has a CPU
    quota: a busy loop in it is throttled by the kernel."""
    import subprocess

    from mailtrace.grading.sandbox import Cgroup

    group = Cgroup(f"test-cpu-{os.getpid()}", Limits(cpus=0.5))
    try:
        assert any("cpu" in c for c in group.controllers), group.controllers
        stat = next(d / "cpu.stat" for d, c in zip(group.dirs, group.controllers) if "cpu" in c)
        enter = " ".join(f'echo $$ > "{p}";' for p in group.procs)
        busy = subprocess.Popen(["/bin/sh", "-c", f'{enter} exec python3 -c "while True: pass"'])
        try:
            deadline = time.monotonic() + 20
            throttled = 0
            while time.monotonic() < deadline and not throttled:
                fields = dict(line.split() for line in stat.read_text().splitlines())
                throttled = int(fields.get("nr_throttled", 0))
                time.sleep(0.05)
            assert throttled > 0, "a busy loop in the run's cgroup was never throttled"
        finally:
            busy.kill()
            busy.wait()
    finally:
        group.close()


def test_cgroups_left_by_a_grader_that_is_gone_are_removed():
    """After a class with a fork bomb, one run's cgroups stayed (its tasks were still exiting when
    the run closed them, 5 s after the kill).  Runs retry later, and a grader starting up removes
    the empty cgroups of graders that no longer exist."""
    import subprocess

    from mailtrace.grading import sandbox

    if not sandbox.cgroups_available():
        pytest.skip("no cgroup controller this grader may write here")
    gone = subprocess.Popen(["true"])
    gone.wait()
    probe = sandbox.Cgroup(f"run-{os.getpid()}-probe-parent", Limits())
    try:
        parents = [d.parent for d in probe.dirs]
    finally:
        probe.close()
    stale = [parent / f"run-{gone.pid}-1-2" for parent in parents]
    for d in stale:
        d.mkdir()
    for parent in parents:
        sandbox._sweep_stale(parent)
    assert not any(d.exists() for d in stale)
    assert all(p.exists() for p in parents)


@pytest.mark.skipif(not _cpu_controller_here(), reason="no cgroup cpu controller on this machine")
def test_the_cpu_quota_covers_all_the_scenarios_of_a_submission_at_once():
    """A fork bomb runs in every scenario, and a submission's scenarios run at once (busy and
    waiting pools): with one quota per run, two of them took both CPUs and a correct client in
    the same class was killed in slow-server.  The quota is on the submission's cgroup."""
    from mailtrace.grading import sandbox

    group = sandbox.new_group()
    runs = [sandbox.Cgroup(f"run-{os.getpid()}-{i}", Limits(cpus=1), group) for i in range(2)]
    try:
        cpu_dirs = [d for r in runs for d, c in zip(r.dirs, r.controllers) if "cpu" in c]
        assert len(cpu_dirs) == 2 and cpu_dirs[0].parent == cpu_dirs[1].parent
        parent = cpu_dirs[0].parent
        assert parent.name == group
        quota = (parent / "cpu.max").read_text().split()[0] if (parent / "cpu.max").exists() \
            else (parent / "cpu.cfs_quota_us").read_text().strip()
        assert quota == str(sandbox.CPU_PERIOD_US)
    finally:
        for r in runs:
            r.close()
        sandbox.remove_group(group)
    assert not any(d.parent.exists() for r in runs for d in r.dirs)


def test_folders_left_by_a_grader_that_was_killed_are_removed_by_the_next(tmp_path):
    """A grader killed with SIGKILL mid-class cannot clean up: its working folders (with what the
    program made in them, deep trees and links included) and /etc files stay in ROOT_BASE.  The
    next grader removes those whose grader is gone, and keeps a live grader's."""
    import subprocess

    from mailtrace.grading.files import remove_tree

    gone = subprocess.Popen(["true"])
    gone.wait()
    ROOT_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    stale_run, stale_etc = ROOT_BASE / f"run-{gone.pid}-abc", ROOT_BASE / f"etc-{gone.pid}-1234"
    live = ROOT_BASE / f"run-{os.getpid()}-live"
    for d in (stale_run, stale_etc, live):
        d.mkdir()
    deep = stale_run / "home"
    deep.mkdir()
    (deep / "shadow-link").symlink_to("/etc/shadow")  # removed, not followed
    (deep / "outside").symlink_to(tmp_path)
    (tmp_path / "keep").write_text("not the grader's")
    try:
        graded = subprocess.run([sys.executable, "-m", "mailtrace", "grade", "mime-compose", str(MIME),
                                 "--scenario", "text-only", "--format", "json"],
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert graded.returncode == 0, graded.stderr
        assert not stale_run.exists() and not stale_etc.exists()
        assert live.exists() and (tmp_path / "keep").exists() and Path("/etc/shadow").exists()
    finally:
        for d in (stale_run, stale_etc, live):
            remove_tree(d)


def test_sandboxes_built_at_once_all_get_the_cgroups():
    """Two scenarios start together (``--jobs 2``): each asks which cgroup controllers it gets.
    The probe was one fixed-name cgroup made without a lock: the thread whose mkdir lost got
    none, and its program ran without memory, pids or CPU limits (found by an independent tester)."""
    import concurrent.futures

    from mailtrace.grading import sandbox

    known = sandbox.cgroups_available()
    if not known:
        pytest.skip("no cgroup controller this grader may write here")
    for _ in range(5):
        sandbox._CGROUPS_PROBED.clear()  # as in a fresh grader process
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: sandbox.cgroups_available(), range(8)))
        assert answers == [known] * 8
