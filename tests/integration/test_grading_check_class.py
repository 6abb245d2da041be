"""Regressions found by grading an independently written class (issue #13, grader-check):
each test grades a small program for real, the way an instructor runs `mailtrace grade`."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade


def _write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))
    return folder


def test_a_server_that_crashes_at_start_is_diagnosed_as_such(tmp_path):
    """A POP3 server that dies reading a file it expects got "did none of the exercise's work
    (it is still the skeleton)": the scenarios skipped after the first crash (the server never
    listened) counted as runs that showed no crash.  It is a crash at start, and says so."""
    folder = _write(tmp_path / "ana", "pop3_server.py", """\
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--port"); p.add_argument("--maildir"); p.add_argument("--users")
        a = p.parse_args()
        open(a.maildir + "/config.ini").read()
        """)
    report = grade(load_exercise("pop3-server"), folder, seed=3, jobs=2)  # every scenario: some are skipped
    assert report.score == 0
    assert "config.ini" in report.diagnosis and "FileNotFoundError" in report.diagnosis, report.diagnosis
    assert "skeleton" not in report.diagnosis
    es = grade(load_exercise("pop3-server"), folder, seed=3, jobs=1, scenarios=["lecture-session"], lang="es")
    assert es.diagnosis.startswith("El programa se detiene antes de hacer nada"), es.diagnosis
