"""Benchmark (run by hand, not a test): the grader's own overhead per scenario.

    python tests/bench/bench_grader.py [--repeat 3]

For every scenario of every exercise that does not wait by design (no delays, no silent server),
the reference solution is graded serially; the overhead of a scenario is its wall time (lab and
fixture, scripted server start/stop, working directory, running, collecting files, checks)
minus the program's own run time as the sandbox measured it.  The sandbox's wrapper (unshare,
prlimit, setpriv) is measured apart: /bin/true through it versus directly.  Target: < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from mailtrace.grading.checks import load_all
from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import _mostly_waits, run_scenario, score_run, weights
from mailtrace.grading.sandbox import Limits, Sandbox

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = {"smtp-client": "solutions/smtp-client/smtp_client.py", "pop3-client": "solutions/pop3-client/pop3_client.py",
             "imap-client": "solutions/imap-client/imap_client.py", "mime-compose": "solutions/mime-compose/mime_compose.py"}


def ms(x: float) -> str:
    return f"{x * 1000:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    load_all()
    sandbox = Sandbox(Limits(timeout=10))
    print(f"sandbox: {'isolated (root)' if sandbox.isolate else 'plain'}; python for programs: {sandbox.python()}")
    overheads, programs = [], []
    for name, sol in SOLUTIONS.items():
        ex = load_exercise(name)
        w = weights(ex)
        for sc in ex.scenarios:
            if _mostly_waits(sc, ex):
                continue
            for i in range(args.repeat):
                t0 = time.perf_counter()
                run = run_scenario(ex, sc, ROOT / sol, 1000 + i, sandbox)
                score_run(run, w)
                total = time.perf_counter() - t0
                overheads.append(total - run.program.duration)
                programs.append(run.program.duration)
    print(f"{len(overheads)} scenario runs")
    print(f"grader overhead per scenario: median {ms(statistics.median(overheads))}, "
          f"mean {ms(statistics.mean(overheads))}, max {ms(max(overheads))}")
    print(f"program run time (as measured, wrapper included): median {ms(statistics.median(programs))}")
    direct, wrapped = [], []
    wd = sandbox.make_workdir()
    for _ in range(20):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"])
        direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sandbox.run(["/bin/true"], wd)
        wrapped.append(time.perf_counter() - t0)
    sandbox.remove_workdir(wd)
    print(f"sandbox wrapper: /bin/true direct {ms(statistics.median(direct))}, "
          f"through the sandbox {ms(statistics.median(wrapped))} "
          f"(+{ms(statistics.median(wrapped) - statistics.median(direct))})")


if __name__ == "__main__":
    main()
