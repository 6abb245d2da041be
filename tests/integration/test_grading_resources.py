"""Grading leaves nothing open behind it: a class of a hundred students is graded in one process,
so each scenario's lab store (lock files, poller thread) must be closed when the scenario ends."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade

ROOT = Path(__file__).resolve().parents[2]


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_grading_does_not_leak_descriptors_or_threads():
    exercise = load_exercise("smtp-client")
    program = ROOT / "solutions" / "smtp-client" / "smtp_client.py"
    scenarios = ["one-recipient", "three-recipients"]
    grade(exercise, program, seed=7, jobs=2, scenarios=scenarios)  # warm up (imports, caches)
    fds, threads = open_descriptors(), threading.active_count()
    for seed in range(3):
        grade(exercise, program, seed=seed, jobs=2, scenarios=scenarios)
    assert open_descriptors() <= fds + 1, "a graded scenario left descriptors open"
    assert threading.active_count() <= threads + 1, "a graded scenario left threads running"
