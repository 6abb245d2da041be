"""``mailtrace grade --lang es``: the whole report is Spanish (issue #13 item 5), in every format,
and checks that could not be seen are weighted out with a pointer (issue #13 item 4).

The English left in a Spanish report may only be what the student's program or the server said
(transcript lines), names (commands, headers, check ids) and the program's own output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailtrace.grading.report import CheckResult, Report, ScenarioResult

ROOT = Path(__file__).resolve().parents[2]
#: English words that only an untranslated sentence of ours would bring into a Spanish report
ENGLISH = re.compile(r"\b(?:the|was|were|Expected|Happened|See|not run|exit status|could not|should|must|"
                     r"every|which|without|after|before|killed|network|sealed|timeout|wall clock)\b")


def _ours(text: str) -> list[str]:
    """The lines of a text report that are the grader's words (not transcript lines or output)."""
    out = []
    for line in text.splitlines():
        body = line.strip()
        if re.match(r"^(?:>>\s*)?(?:C|S): ", body) or body.startswith("-- "):
            continue  # a transcript line: what the client or the server sent
        out.append(re.sub(r"\b[\w-]+\.[\w.-]+", "", body))  # without check ids (smtp.stops-after-error)
    return out


def _grade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailtrace", "grade", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


def test_a_spanish_report_of_a_defective_client_has_no_english_sentence(tmp_path):
    prog = tmp_path / "smtp_client.py"
    source = (ROOT / "solutions" / "smtp-client" / "smtp_client.py").read_text()
    assert source.count('"Date"') or "formatdate" in source
    # one defect: no Date header (smtp.headers), and a wrong exit status after a refusal
    prog.write_text(source.replace("formatdate(", "(lambda *a, **k: 'yesterday')("))
    chosen = ["one-recipient", "all-recipients-refused", "no-server"]
    args = ["smtp-client", str(prog), "--seed", "4", "--lang", "es", *[x for s in chosen for x in ("--scenario", s)]]
    text = _grade(*args, "--format", "text")
    assert text.returncode == 0, text.stderr
    ours = _ours(text.stdout)
    assert "nota" in ours[1] and "semilla" in ours[1]
    assert any("Date en el formato del RFC 5322" in line for line in ours), text.stdout  # the rule's own title
    assert any(line.startswith("Se esperaba: un Date en el formato del RFC 5322") for line in ours), text.stdout
    assert any(line.startswith("entorno aislado:") for line in ours)
    leftovers = [line for line in ours if ENGLISH.search(line)
                 and not line.startswith(("Ocurrió: Date:", "mailtrace grade:"))]
    assert not leftovers, "\n".join(leftovers)

    junit = _grade(*args, "--format", "junit")
    root = ET.fromstring(junit.stdout)
    failures = root.findall(".//failure")
    assert failures and all(not ENGLISH.search(f.get("message", "")) for f in failures)
    assert any("Se esperaba" in (f.text or "") for f in failures)

    gs = json.loads(_grade(*args, "--format", "gradescope").stdout)
    assert "semilla" in gs["output"]
    assert any(t["output"] == "superada" for t in gs["tests"])
    assert all(not ENGLISH.search(t["name"]) for t in gs["tests"])


def test_a_missing_program_is_said_in_spanish(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to run\n")
    (tmp_path / "a.py").write_text("")
    (tmp_path / "b.py").write_text("")
    r = _grade("smtp-client", str(tmp_path), "--lang", "es", "--format", "json")
    assert r.returncode == 1
    error = json.loads(r.stdout)["error"]
    assert error.startswith("la entrega no tiene smtp_client.py") and "Makefile" in error


def _check(cid: str, passed: bool, points: float, unobserved: bool = False) -> CheckResult:
    return CheckResult(cid, cid, passed, points if passed else 0.0, points, "" if passed else "why",
                       unobserved=unobserved)


def test_unseen_checks_are_weighted_out_only_when_a_seen_failure_explains_them():
    from mailtrace.grading.grader import _point_to_root

    seen = ScenarioResult("a", checks=[_check("x.root", False, 10), _check("x.ok", True, 10)])
    unseen = ScenarioResult("b", checks=[_check("x.wait", False, 30, unobserved=True), _check("x.ok2", True, 50)])
    report = Report("x", "prog", 1, scenarios=[seen, unseen])
    _point_to_root(report, "en")
    report.finish()
    wait = unseen.checks[0]
    assert wait.excluded and not wait.judged and wait.points == 0
    assert wait.feedback.startswith("Not judged") and "Fix x.root first" in wait.feedback
    # 60 earned of the 70 judged, over the full 100: the root's 10 points are lost, once
    assert report.max_score == 100 and report.score == pytest.approx(100 * 60 / 70, abs=0.01)
    assert report.lost() == {"x.root": 10}

    alone = ScenarioResult("b", checks=[_check("x.wait", False, 30, unobserved=True), _check("x.ok2", True, 70)])
    report = Report("x", "prog", 1, scenarios=[alone])
    _point_to_root(report, "es")
    report.finish()
    assert not alone.checks[0].excluded and report.score == 70  # nothing else explains it: it fails
