"""The grader's own mutation test: the reference solutions score full marks, and each
deliberately defective client (tests/defects.py, one defect each, written at test time by the
``defective`` fixture) loses points on exactly the check named for its defect and nowhere else.

Grading about 70 programs takes minutes: the tests that need it are marked ``slow`` (CI runs
them: `pytest -m "not slow"` leaves them out on a laptop)."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import Pools, grade

from defects import MUTANTS, SOLUTIONS, STANDALONE, StaleDefect, mutant_source

ROOT = Path(__file__).resolve().parents[2]

# grading ~70 submissions (about 1,300 scenario runs) is the module fixture's work: it belongs
# to the first test that asks for it, so the per-test timeout must leave room for it
pytestmark = pytest.mark.timeout(900)

EXERCISES = sorted(SOLUTIONS)
SEED = 20261126
#: correct clients written apart from the reference solutions, in other styles
ALTERNATIVES = {"tests/alternative/smtp_client_makefile.py": "smtp-client",
                "tests/alternative/pop3_client_list.py": "pop3-client",
                "tests/alternative/imap_client_literals.py": "imap-client",
                "tests/alternative/mime_compose_base64.py": "mime-compose",
                # by the independent tester (grader_findings.md F1-F3): PIPELINING, QUIT after a timeout
                "tests/alternative/smtp_client_pipelining.py": "smtp-client",
                "tests/alternative/smtp_client_select.py": "smtp-client",
                "tests/alternative/pop3_client_select.py": "pop3-client",
                "tests/alternative/imap_client_literalplus.py": "imap-client",
                "tests/alternative/mime_compose_rfc2231.py": "mime-compose"}


@pytest.fixture(scope="module")
def graded(defective):
    """Grade every solution, alternative and mutant once, all in parallel (shared pools); the
    reports are keyed by the solution's or alternative's path and the mutant's name."""
    pools = Pools(jobs=4, idle=64)
    exercises = {name: load_exercise(name) for name in EXERCISES}
    jobs = [(name, SOLUTIONS[name], ROOT / SOLUTIONS[name]) for name in EXERCISES]
    jobs += [(ex, out, defective[out]) for ex, out, _, _ in MUTANTS]
    jobs += [(ex, path, ROOT / path) for path, ex in ALTERNATIVES.items()]
    jobs += [(ex, out, defective[out]) for ex, out, _ in STANDALONE]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as coord:
            futures = {key: coord.submit(grade, exercises[ex], path, seed=SEED, pools=pools) for ex, key, path in jobs}
            return {k: f.result() for k, f in futures.items()}
    finally:
        pools.close()


def _failures(report) -> str:
    return "\n".join(f"{s.name}/{c.id}: {c.feedback}" for s in report.scenarios for c in s.checks if not c.passed)


@pytest.mark.slow
@pytest.mark.parametrize("exercise", EXERCISES)
def test_reference_solution_scores_full_marks(graded, exercise):
    report = graded[SOLUTIONS[exercise]]
    assert not report.error
    assert report.max_score > 0
    assert report.score == report.max_score, _failures(report)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(ALTERNATIVES))
def test_other_correct_clients_score_full_marks(graded, path):
    report = graded[path]
    assert report.score == report.max_score, _failures(report)


@pytest.mark.slow
@pytest.mark.parametrize("exercise,mutant,check", [(ex, out, chk) for ex, out, chk, _ in MUTANTS] + STANDALONE,
                         ids=[out for _, out, _, _ in MUTANTS] + [out for _, out, _ in STANDALONE])
def test_mutant_loses_points_only_on_its_check(graded, exercise, mutant, check):
    report = graded[mutant]
    lost = report.lost()
    assert set(lost) == set(check.split("+")), f"lost {lost}\n{_failures(report)}"


def test_every_defect_applies_to_todays_solution_and_names_real_checks(defective):
    """Each edit of the table applies exactly once to today's solution (else the mutant would
    silently test nothing), each written mutant is that source, and each named check exists."""
    for ex, out, check, _ in MUTANTS:
        assert defective[out].read_text("utf-8") == mutant_source(out)
        assert set(check.split("+")) <= set(load_exercise(ex).checks), out
    for ex, out, check in STANDALONE:
        assert defective[out].is_file(), out
        assert set(check.split("+")) <= set(load_exercise(ex).checks), out


def test_a_replacement_that_no_longer_applies_is_reported():
    ex, out, check, edits = MUTANTS[0]
    for broken in ([("text that is in no solution", "")], [("\n", "\n")]):  # found 0 times, many times
        with pytest.raises(StaleDefect, match=f"{out}: the replacement is found"):
            mutant_source(out, [(ex, out, check, broken)])


@pytest.mark.slow
def test_feedback_marks_the_right_line_and_cites_the_right_rfc(graded):
    """Findings F8, F9 (independent grader review): a missing QUIT is marked at the client's close, and
    the POP3/IMAP timeout feedback does not cite the SMTP RFC."""
    report = graded["smtp/no_quit.py"]
    quit_ = [c for s in report.scenarios for c in s.checks if c.id == "smtp.quit" and not c.passed]
    assert quit_ and all(">> -- connection closed by the client" in c.feedback for c in quit_)
    for mutant, cid in (("pop3/no_timeout.py", "pop3.timeout"), ("imap/no_timeout.py", "imap.timeout")):
        report = graded[mutant]
        lost = [c for s in report.scenarios for c in s.checks if c.id == cid and not c.passed]
        assert lost and all("RFC 5321" not in c.feedback for c in lost)


@pytest.mark.slow
@pytest.mark.parametrize("mutant", ["smtp/uses_smtplib.py", "pop3/uses_poplib.py", "imap/uses_imaplib.py",
                                    "mime/uses_email_mime.py"])
def test_a_banned_library_caps_the_score(graded, mutant):
    """Finding F19: smtplib speaks SMTP correctly, so every behavioural check passed (95/100)."""
    report = graded[mutant]
    assert set(report.lost()) == {"policy.imports"}
    assert report.score == 0 and "policy.imports" in report.capped
