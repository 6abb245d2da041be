"""GitHub Classroom: the result a Classroom runner step emits, and the workflow that emits it.

GitHub Classroom grades each student's push in GitHub Actions.  A *runner* step sets an output
``result``: the base64 of a JSON object ::

    {"version": 1, "status": "pass" | "fail" | "error", "max_score": N,
     "tests": [{"name", "status", "score", "message", ...}]}

and the reporter step (``classroom-resources/autograding-grading-reporter``) decodes the
variable ``<RUNNER>_RESULTS`` of each runner named in its ``runners`` input, prints the tests in
the log, and totals the points: the sum of ``score`` over every test, out of the sum of
``max_score`` over the runners.  Classroom reads them from the workflow named "Autograding
Tests".  So here: one test per check (its points summed over the scenarios), the tests' scores
add up to mailtrace's own score (a policy cap scales them down), and ``max_score`` is the
exercise's points.
"""

from __future__ import annotations

import json
import re

from mailtrace.grading.report import Report

#: the workflow name Classroom looks for
WORKFLOW_NAME = "Autograding Tests"
REPORTER = "classroom-resources/autograding-grading-reporter@v1"


def _t(key: str, lang: str, **fields: object) -> str:
    from mailtrace.knowledge.messages import text

    return text("github_classroom", key, lang, **fields)


def _split_cents(total: float, weights: list[float]) -> list[int]:
    """``total`` (in hundredths) shared in proportion to ``weights``; the parts add up exactly
    (largest remainder), so Classroom's sum of the tests' scores is mailtrace's score."""
    cents = round(total * 100)
    whole = sum(weights)
    if not weights or whole <= 0:
        return [0] * len(weights)
    exact = [cents * w / whole for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: cents - sum(parts)]:
        parts[i] += 1
    return parts


def to_result(report: Report, *, lang: str = "en", program: str = "") -> dict:
    """The runner's result: one test per check, in the order the checks first ran."""
    checks: dict[str, dict] = {}
    for s in report.scenarios:
        for c in s.checks:
            t = checks.setdefault(c.id, {"title": c.title, "points": 0.0, "passed": True, "visibility": c.visibility,
                                         "feedback": [], "duration": 0.0})
            t["points"] += c.points
            t["passed"] = t["passed"] and c.passed
            t["duration"] += s.duration
            if not c.passed and c.feedback:
                t["feedback"].append(f"[{s.name}] {c.feedback}")
    scores = _split_cents(report.score, [t["points"] for t in checks.values()])
    repro = f"mailtrace grade {report.exercise} {program or report.submission} --seed {report.seed}"
    tests = []
    for (cid, t), cents in zip(checks.items(), scores):
        if t["visibility"] != "visible" and not t["passed"]:
            message = _t("hidden", lang)
        else:
            message = "\n\n".join(t["feedback"]) if not t["passed"] else _t("passed", lang)
        if report.capped and cents < round(t["points"] * 100):
            message += "\n" + _t("capped_note", lang, capped=report.capped)
        tests.append({"name": f"{t['title']} ({cid})", "status": "pass" if t["passed"] else "fail",
                      "score": cents / 100, "message": message, "test_code": repro, "filename": "",
                      "line_no": 0, "duration": round(t["duration"], 3)})
    if report.error:
        status = "error"
        tests = [{"name": _t("error_test", lang), "status": "error", "score": 0, "message": report.error,
                  "test_code": repro, "filename": "", "line_no": 0, "duration": 0}]
    elif all(t["status"] == "pass" for t in tests) and report.score >= report.max_score - 1e-9:
        status = "pass"
    else:
        status = "fail"
    return {"version": 1, "status": status, "max_score": report.max_score, "tests": tests}


def log_text(report: Report, result: dict, *, lang: str = "en", program: str = "") -> str:
    """What the student reads in the Actions log: the score, then each check and its feedback."""
    lines = [_t("log_header", lang, exercise=report.exercise, score=report.score, max_score=report.max_score,
                seed=report.seed)]
    if report.error:
        lines.append(_t("log_error", lang, error=report.error))
    if report.capped:
        lines.append(_t("log_capped", lang, capped=report.capped))
    for t in result["tests"]:
        mark = _t("log_pass", lang) if t["status"] == "pass" else _t("log_fail", lang)
        lines.append(f"{mark} {t['score']:g}  {t['name']}")
        if t["status"] != "pass":
            lines.extend("     " + x for x in t["message"].splitlines())
    lines.append(_t("log_footer", lang, exercise=report.exercise, program=program or report.submission,
                    seed=report.seed))
    return "\n".join(lines) + "\n"


def runner_id(exercise: str) -> str:
    """The step id: letters and digits only (the reporter reads ``<ID upper-cased>_RESULTS``)."""
    return re.sub(r"[^a-z0-9]", "", exercise.lower()) or "mailtrace"


def _q(value: str) -> str:
    """A YAML scalar in double quotes (JSON's string syntax is YAML's)."""
    return json.dumps(value, ensure_ascii=False)


def _sh(value: str) -> str:
    """A word for the shell, in single quotes."""
    return "'" + value.replace("'", "'\\''") + "'"


def workflow(exercise: str, *, install: str, program: str, max_score: float, lang: str = "en",
             python: str = "3.12", exercise_arg: str | None = None) -> str:
    """``.github/workflows/classroom.yml`` for the template repository.

    ``install`` is what pip installs (a pinned wheel URL, ``mailtrace @ git+https://...@TAG``,
    ``mailtrace==X.Y``); ``program`` is the student's program (a path in the repository).
    """
    rid = runner_id(exercise)
    result_file = '"$RUNNER_TEMP/mailtrace-result.json"'
    failed = json.dumps({"version": 1, "status": "error", "max_score": max_score,
                         "tests": [{"name": _t("error_test", lang), "status": "error", "score": 0,
                                    "message": _t("failed_to_run", lang, program=program)}]}, ensure_ascii=False)
    grade = (f"mailtrace grade {_sh(exercise_arg or exercise)} {_sh(program)} --format github-classroom "
             f"--lang {lang} -o {result_file}")
    run_grade = "\n".join([
        f"rm -f {result_file}",
        f'{grade} || echo "mailtrace grade: exit status $?"',
        f"if [ ! -s {result_file} ]; then",
        f"  printf '%s\\n' {_sh(failed)} > {result_file}",
        "fi",
        f'echo "result=$(base64 -w0 < {result_file})" >> "$GITHUB_OUTPUT"',
    ])
    block = "\n".join("          " + line for line in run_grade.splitlines())
    return f"""# GitHub Classroom autograding for the mailtrace exercise {exercise}, written by
#   mailtrace classroom-workflow {exercise}
# Put it in the assignment's template repository as .github/workflows/classroom.yml.  Each push
# grades {program} on GitHub's runner; the reporter step sends the points to Classroom, and the
# student reads the feedback in the log of the "{exercise}" step.
name: {WORKFLOW_NAME}
"on":
  - push
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Set up Python
        uses: actions/setup-python@v5
        with:
          python-version: {_q(python)}
      - name: Install mailtrace
        run: |
          python -m pip install --quiet {_sh(install)}
      - name: {_q(exercise)}
        id: {rid}
        run: |
{block}
      - name: Autograding Reporter
        uses: {REPORTER}
        env:
          {rid.upper()}_RESULTS: "${{{{ steps.{rid}.outputs.result }}}}"
        with:
          runners: {rid}
"""
