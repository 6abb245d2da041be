"""A busy machine does not change a grade: the sandbox's wall-clock limit gives back the time a
program was ready to run but waited for a CPU (/proc schedstat), and nothing else.

The busy machine is made here: a CPU hog on the same CPU as the program, at a higher priority.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from mailtrace.grading.sandbox import MAX_CPU_WAIT_FACTOR, Limits, Sandbox, cpu_use

from waiting import wait_until

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/schedstat") or not hasattr(os, "sched_setaffinity"),
                                reason="needs Linux /proc/PID/schedstat and CPU affinity")

#: pinned to CPU 0 at nice 5: it gets a quarter to a half of that CPU while the hog runs (the
#: scheduler's autogroups decide), less when the machine is busy with other jobs too
STARVED = """
import os, time
os.sched_setaffinity(0, {{0}})
os.nice(5)
start = time.process_time()
while time.process_time() - start < {work}:  # CPU-seconds of work
    pass
print("done")
"""


@pytest.fixture
def hog():
    proc = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"])
    yield proc
    proc.kill()
    proc.wait(10)


def run(code: str, timeout: float):
    sb = Sandbox(Limits(timeout=timeout, cpu_seconds=10))
    wd = sb.make_workdir()
    try:
        (wd / "p.py").write_text(code)
        sb.give(wd)
        return sb.run([sb.python(), "p.py"], wd)
    finally:
        sb.remove_workdir(wd)


def test_a_program_kept_from_the_cpu_gets_that_time_back(hog):
    # Sharing CPU 0 with the hog, the program gets half of it at most (less at nice 5, or when
    # the machine is busy with other jobs too), so 0.8 limit's worth of work needs more than the
    # limit.  If even the time given back (at most 3x the limit) was not enough, the machine is
    # busier still: try again with less work.
    limit, work = 0.5, 0.4
    for _ in range(3):
        r = run(STARVED.format(work=work), timeout=limit)
        if not (r.timed_out and r.cpu_wait_given >= 0.9 * limit * MAX_CPU_WAIT_FACTOR):
            break
        work /= 2
    assert r.exit_code == 0 and not r.timed_out and r.stdout == b"done\n", (r.stderr, r.duration, r.cpu_wait_given)
    assert r.limit_seconds == limit and r.cpu_wait_given > 0  # it was given back time...
    assert r.duration > limit  # ...and needed it: without the CPU wait given back, it would have been stopped


def test_a_program_that_waits_on_its_own_gets_nothing_back(hog):
    r = run("import time\ntime.sleep(60)\n", timeout=0.5)
    assert r.timed_out and r.exit_code is None
    assert r.cpu_wait_given <= 0.5 * MAX_CPU_WAIT_FACTOR and r.duration < 30


def test_cpu_use_of_a_process_that_is_gone_is_zero_and_a_busy_one_is_runnable(hog):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert cpu_use([proc.pid]) == (0.0, 0.0, False)
    wait_until(lambda: cpu_use([hog.pid])[0] > 0.05, what="the hog to use a CPU")
    assert cpu_use([hog.pid])[2]  # a busy loop is always runnable


def test_the_process_tree_holds_every_descendant_and_nothing_else():
    """A program's processes (whose CPU waits are counted) are its first process and all it
    started, grandchildren included; the walk by ``children`` files finds what a scan of every
    process finds, and no process outside the tree."""
    from mailtrace.grading.sandbox import _process_tree, _process_tree_by_scan

    outsider = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    program = subprocess.Popen(["sh", "-c", "sleep 30 & (sleep 30 & sleep 30; wait) & wait"])
    try:
        wait_until(lambda: len(_process_tree_by_scan(program.pid)) >= 5, timeout=10)
        tree = _process_tree(program.pid)
        assert sorted(tree) == sorted(_process_tree_by_scan(program.pid))
        assert tree[0] == program.pid and len(tree) == 5  # sh, sleep, subshell, its two sleeps
        assert outsider.pid not in tree and os.getpid() not in tree
    finally:
        for proc in (outsider, program):
            for pid in reversed(_process_tree(proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            proc.wait()
