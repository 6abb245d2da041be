"""Any language: a Python file, a folder with an executable ``run``, a folder with a Makefile or
``build.sh`` built first in the sandbox.  Real C (gcc), Java (javac/java: the JVM starts under
the sandbox's limits), Node.js, bash and Python smtp-clients (tests/languages/) score every
point of every scenario of the exercise, as an instructor grades them; the same program with
one defect, made here at test time (QUIT replaced by NOOP), loses the points of ``smtp.quit``
and only those (but for the NOOP after a 554 greeting, a fault of its own); the C client with
one of the gaps it once had (a raw 8-bit subject or body, exit 1 after a refused greeting)
and the C SMTP and Java POP3 servers of tests/servers/ with one defect each (no dot-unstuffing;
QUIT that deletes nothing) lose the check that names it; a compiler error is shown as the feedback.
(The correct C and Java servers score 100 on every scenario in test_grading_servers.py.)

Every submission is graded once (a correct one or the QUIT->NOOP one on all scenarios, another
one-defect one on the scenarios that show its defect), and all the gradings share one set of
worker pools (``Pools``), so the scenarios that only wait (a silent server, slow replies) of
all of them overlap: the file costs about one grading of the slowest scenario, not fifteen.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import Pools, grade
from mailtrace.grading.sandbox import Limits

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ROOT / "tests" / "languages" / "smtp-client"
SERVERS = ROOT / "tests" / "servers"
NEEDS = {"c": ("cc", "make"), "java": ("javac", "java"), "node": ("node",), "bash": ("bash",), "python": ()}
SEED = 11


#: one-defect programs, each graded on the scenarios that show its defect: it must cost the check
#: that names it and only that one.  name: (language, exercise, folder, file, text, replacement,
#: scenarios, lost checks).  The C client's are the gaps it once had.
ONE_DEFECT = {
    "c-client-raw-subject": ("c", "smtp-client", LANGUAGES / "c", "smtp_client.c",
                             "if (is_ascii(subject, n)) {", "if (1) {", ["non-ascii"], {"smtp.7bit"}),
    "c-client-raw-body": ("c", "smtp-client", LANGUAGES / "c", "smtp_client.c",
                          "int ascii = is_ascii(body, body_size);", "int ascii = 1;", ["non-ascii"], {"smtp.7bit"}),
    "c-client-exit-1-after-refused-greeting": (
        "c", "smtp-client", LANGUAGES / "c", "smtp_client.c", 'give_up(2, "the server refused the session")',
        'give_up(1, "the server refused the session")', ["greeting-421", "greeting-554"], {"smtp.exit-status"}),
    "c-server-no-unstuffing": ("c", "smtp-server", SERVERS / "c_smtp", "smtp_server.c",
                               "char *start = line[0] == '.' ? line + 1 : line;", "char *start = line;",
                               ["bodies"], {"smtpd.unstuff"}),
    "java-server-quit-deletes-nothing": (
        "java", "pop3-server", SERVERS / "java_pop3", "Pop3Server.java",
        "if (paths != null) for (int n : deleted)", "if (false) for (int n : deleted)",
        ["dele-then-quit"], {"pop3d.update"}),
}


def missing_tools(lang: str) -> list[str]:
    return [tool for tool in NEEDS[lang] if not shutil.which(tool)]


def submission(lang: str, folder: Path, defect: bool = False) -> Path:
    if lang == "python":
        dest = folder / "smtp_client.py"
        shutil.copy(ROOT / "solutions" / "smtp-client" / "smtp_client.py", dest)
        files = [dest]
    else:
        dest = folder / lang
        shutil.copytree(LANGUAGES / lang, dest)
        files = [p for p in dest.iterdir() if p.is_file()]
    if defect:
        for f in files:
            f.write_text(f.read_text().replace("QUIT", "NOOP"))
    return dest


def limits() -> Limits:
    # a generous wall clock: a JVM on a loaded machine must not lose points to the clock (issue #10);
    # the scenarios that wait for a time-out (silent-server) carry their own limit
    return Limits(timeout=40, cpu_seconds=40)


def failures(report) -> str:
    """Every failed check, quoted: scenario, check, feedback (and the build's output)."""
    lines = [f"score {report.score}/{report.max_score}; error: {report.error or '-'}"]
    for s in report.scenarios:
        if s.name == "build" and s.exit_code:
            lines.append(f"build: {s.status}\n{s.stderr[-600:]}")
        lines += [f"{s.name}/{c.id} [{s.status}]: {c.feedback}" for c in s.checks if not c.passed]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[tuple[str, bool] | str, object]:
    """Every correct and one-defect submission graded once on every scenario, all at once on
    shared pools: two workers for the busy scenarios, more for those that only wait."""
    jobs = {}
    for lang in NEEDS:
        if missing_tools(lang):
            continue
        for defect in (False, True):
            folder = tmp_path_factory.mktemp(f"{lang}-{'defect' if defect else 'correct'}")
            jobs[(lang, defect)] = submission(lang, folder, defect)
    jobs = {key: ("smtp-client", path, None) for key, path in jobs.items()}
    for name, (lang, ex, origin, file, text, replacement, scenarios, _) in ONE_DEFECT.items():
        if missing_tools(lang):
            continue
        path = tmp_path_factory.mktemp(name) / origin.name
        shutil.copytree(origin, path, ignore=shutil.ignore_patterns("run", "classes", "*.class"))
        source = (path / file).read_text()
        assert text in source, f"{name}: {text!r} is no longer in {file}"
        (path / file).write_text(source.replace(text, replacement, 1))
        jobs[name] = (ex, path, scenarios)
    exercises = {ex: load_exercise(ex) for ex, _, _ in jobs.values()}
    pools = Pools(jobs=2, idle=24)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs) or 1) as coord:
            futures = {key: coord.submit(grade, exercises[ex], path, seed=SEED, limits=limits(), pools=pools,
                                         scenarios=scenarios)
                       for key, (ex, path, scenarios) in jobs.items()}
            return {key: f.result() for key, f in futures.items()}
    finally:
        pools.close()


def graded_report(graded, lang: str, defect: bool):
    missing = missing_tools(lang)
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    return graded[(lang, defect)]


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(NEEDS))
def test_a_correct_client_in_any_language_scores_every_point_on_every_scenario(graded, lang):
    report = graded_report(graded, lang, defect=False)
    assert not report.error, report.error
    ran = {s.name for s in report.scenarios}
    assert ran >= {sc.name for sc in load_exercise("smtp-client").scenarios}, ran
    assert report.score == report.max_score == 100, failures(report)
    assert all(c.passed for s in report.scenarios for c in s.checks), failures(report)
    if lang in ("c", "java"):
        build = next(s for s in report.scenarios if s.name == "build")
        assert build.status == "exit status 0", failures(report)


#: the one place where NOOP instead of QUIT is a second fault of its own: after a 554 greeting the
#: client may send only QUIT (RFC 5321 section 3.1), so it "went on" there as well
SECOND_FAULT = {("greeting-554", "smtp.stops-after-error")}


@pytest.mark.slow
@pytest.mark.parametrize("lang", sorted(NEEDS))
def test_one_defect_costs_its_named_check_in_any_language(graded, lang):
    report = graded_report(graded, lang, defect=True)
    failed = {(s.name, c.id) for s in report.scenarios for c in s.checks if not c.passed}
    assert "smtp.quit" in report.lost(), failures(report)
    assert {f for f in failed if f[1] != "smtp.quit"} == SECOND_FAULT, failures(report)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ONE_DEFECT))
def test_a_program_with_one_defect_loses_the_check_that_names_it(graded, name):
    missing = missing_tools(ONE_DEFECT[name][0])
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    report = graded[name]
    assert not report.error, report.error
    assert set(report.lost()) == ONE_DEFECT[name][7], failures(report)


def test_a_compiler_error_is_the_feedback(tmp_path):
    if missing_tools("c"):
        pytest.skip("cc and make not installed")
    folder = submission("c", tmp_path)
    src = folder / "smtp_client.c"
    broken = src.read_text().replace("int accepted = 0;", "int accepted = 0", 1)
    assert broken != src.read_text()
    src.write_text(broken)
    report = grade(load_exercise("smtp-client"), folder, seed=SEED, limits=limits())
    build = next(s for s in report.scenarios if s.name == "build")
    assert build.status.startswith("exit status") and build.exit_code != 0
    assert "error" in build.stderr and "smtp_client.c" in build.stderr
    scenarios = [s for s in report.scenarios if s.name not in ("policy", "build")]
    assert scenarios and all(s.status == "not run: the build failed" for s in scenarios)
    assert all("the build (make) failed" in c.feedback and "smtp_client.c:" in c.feedback
               for s in scenarios for c in s.checks)
    policy = sum(c.points for s in report.scenarios if s.name == "policy" for c in s.checks)
    assert report.score == policy


def test_a_folder_with_nothing_to_run_says_what_is_accepted(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    report = grade(load_exercise("smtp-client"), tmp_path, scenarios=["one-recipient"], seed=1)
    assert "smtp_client.py" in report.error and "run" in report.error and "Makefile" in report.error
