"""Any language: a Python file, a folder with an executable ``run``, a folder with a Makefile or
``build.sh`` built first in the sandbox.  Real C (gcc), Java (javac/java: the JVM starts under
the sandbox's limits), Node.js, bash and Python smtp-clients (tests/languages/) score every
point of the everyday scenarios; the same program with one defect, made here at test time
(QUIT replaced by NOOP), loses the points of ``smtp.quit`` and only those; a compiler error is
shown as the feedback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade
from mailtrace.grading.sandbox import Limits

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ROOT / "tests" / "languages" / "smtp-client"
SCENARIOS = ["one-recipient", "three-recipients", "slow-server", "dot-lines"]
NEEDS = {"c": ("cc", "make"), "java": ("javac", "java"), "node": ("node",), "bash": ("bash",), "python": ()}


def submission(lang: str, tmp_path: Path, defect: bool = False) -> Path:
    missing = [tool for tool in NEEDS[lang] if not shutil.which(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    if lang == "python":
        src = ROOT / "solutions" / "smtp-client" / "smtp_client.py"
        dest = tmp_path / "smtp_client.py"
        shutil.copy(src, dest)
        files = [dest]
    else:
        dest = tmp_path / lang
        shutil.copytree(LANGUAGES / lang, dest)
        files = [p for p in dest.iterdir() if p.is_file()]
    if defect:
        for f in files:
            f.write_text(f.read_text().replace("QUIT", "NOOP"))
    return dest


def grade_it(path: Path):
    # a generous wall clock: a JVM on a loaded machine must not lose points to the clock (issue #10);
    # none of these scenarios waits for a time-out, so the limit only bounds a broken run
    return grade(load_exercise("smtp-client"), path, scenarios=SCENARIOS, seed=11, jobs=2,
                 limits=Limits(timeout=40, cpu_seconds=40))


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(NEEDS))
def test_a_correct_client_in_any_language_scores_every_point(lang, tmp_path):
    report = grade_it(submission(lang, tmp_path))
    assert not report.error, report.error
    build = [(s.status, s.stderr[-600:]) for s in report.scenarios if s.name == "build"]
    assert report.score == report.max_score, (report.lost(), build,
                                              [(s.name, s.status, s.stderr[-300:]) for s in report.scenarios])
    if lang in ("c", "java"):
        assert report.scenarios[1].name == "build" and report.scenarios[1].status == "exit status 0"


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(NEEDS))
def test_one_defect_costs_its_named_check_in_any_language(lang, tmp_path):
    report = grade_it(submission(lang, tmp_path, defect=True))
    assert set(report.lost()) == {"smtp.quit"}, report.lost()


def test_a_compiler_error_is_the_feedback(tmp_path):
    if not (shutil.which("cc") and shutil.which("make")):
        pytest.skip("cc and make not installed")
    folder = tmp_path / "c"
    shutil.copytree(LANGUAGES / "c", folder)
    src = folder / "smtp_client.c"
    src.write_text(src.read_text().replace("int accepted = 0;", "int accepted = 0"))
    report = grade_it(folder)
    build = next(s for s in report.scenarios if s.name == "build")
    assert build.status.startswith("exit status") and build.exit_code != 0
    assert "error" in build.stderr and "smtp_client.c" in build.stderr
    first = next(s for s in report.scenarios if s.name == "one-recipient")
    assert first.status == "not run: the build failed"
    assert all("the build (make) failed" in c.feedback and "smtp_client.c:" in c.feedback for c in first.checks)
    policy = sum(c.points for s in report.scenarios if s.name == "policy" for c in s.checks)
    assert report.score == policy


def test_a_folder_with_nothing_to_run_says_what_is_accepted(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    report = grade(load_exercise("smtp-client"), tmp_path, scenarios=["one-recipient"], seed=1)
    assert "smtp_client.py" in report.error and "run" in report.error and "Makefile" in report.error
