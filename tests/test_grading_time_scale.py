"""The grader's time scale (``mailtrace grade --time-scale``, $MAILTRACE_TIME_SCALE): on a busy
machine every wall-clock allowance of an exercise is multiplied, and nothing else changes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import TIME_SCALE_ENV, grade, time_scale

ROOT = Path(__file__).resolve().parents[1]
MIME = ROOT / "solutions" / "mime-compose" / "mime_compose.py"


def test_the_factor_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(TIME_SCALE_ENV, raising=False)
    assert time_scale() == 1.0
    monkeypatch.setenv(TIME_SCALE_ENV, "2.5")
    assert time_scale() == 2.5 and time_scale(4) == 4
    for bad in ("0.5", "fast", "1000"):
        monkeypatch.setenv(TIME_SCALE_ENV, bad)
        with pytest.raises(ValueError, match=TIME_SCALE_ENV if bad == "fast" else "between 1 and 100"):
            time_scale()


def test_the_cli_refuses_a_factor_below_one():
    r = CliRunner().invoke(main, ["grade", "mime-compose", str(MIME), "--time-scale", "0.5", "--network", "host"])
    assert r.exit_code == 2 and "--time-scale" in r.output and "Traceback" not in r.output


def test_a_program_slower_than_the_allowance_gets_the_scaled_allowance(tmp_path):
    """A program that takes 2 s is stopped under a 0.5 s allowance, and runs to its end when the
    allowance is multiplied by 20 (10 s): the scale reaches the program's wall clock."""
    ex = load_exercise("mime-compose")
    ex = replace(ex, timeout=0.5, scenarios=[replace(ex.scenarios[0], timeout=None)])
    prog = tmp_path / ex.program
    prog.write_text("import time\ntime.sleep(2)\n")
    stopped = grade(ex, prog, seed=3, jobs=1, time_scale_factor=1)
    ran = grade(ex, prog, seed=3, jobs=1, time_scale_factor=20)
    assert stopped.scenarios[-1].exit_code is None  # killed at the allowance
    assert ran.scenarios[-1].exit_code == 0


def test_the_scale_changes_no_score_of_the_reference_solution():
    ex = load_exercise("mime-compose")
    names = [s.name for s in ex.scenarios[:3]]
    plain = grade(ex, MIME, seed=11, scenarios=names, time_scale_factor=1)
    scaled = grade(ex, MIME, seed=11, scenarios=names, time_scale_factor=3)
    assert plain.score == scaled.score == plain.max_score
    assert [[(c.id, c.points) for c in s.checks] for s in plain.scenarios] == \
           [[(c.id, c.points) for c in s.checks] for s in scaled.scenarios]
