"""``mailtrace grade --lang es``: the whole report is Spanish (issue #13 item 5), in every format,
and checks that could not be seen are weighted out with a pointer (issue #13 item 4).

The English left in a Spanish report may only be what the student's program or the server said
(transcript lines), names (commands, headers, check ids) and the program's own output."""

from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
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


#: the class report's and the console's own English, beside the single-student report's
CLASS_ENGLISH = re.compile(ENGLISH.pattern + r"|\b(?:class report|submissions?|Scores|Pass rate|passed by|lost points|"
                           r"student|score|ladder diagram|annotated transcript|graded|wrote|mean|grading|"
                           r"connection (?:opened|closed)|open|close|data|octets|seed)\b")


class _Words(HTMLParser):
    """The text of a page without its style, script and ``<code>`` (a command line to copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script", "code")
        if tag == "title" and self.lines is not None:
            self.lines.append("")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script", "code")

    def handle_data(self, data):
        if not self._skip:
            self.lines.extend(data.splitlines() or [""])


def _page_words(page: str, drop: tuple[str, ...] = ()) -> list[str]:
    """Our lines of an HTML page: a transcript line (C:/S:) keeps only its annotation (after ``#``),
    check ids and the texts in ``drop`` (what the program or server said) are taken out."""
    for text in drop:
        page = page.replace(html.escape(text, quote=False), "").replace(html.escape(text), "")
    parser = _Words()
    parser.feed(page)
    out = []
    for line in parser.lines:
        body = line.strip()
        said = re.match(r"^(?:>>\s*)?(?:C|S): (\[[^\]]*\])?", body)
        if said:  # keep our fold ("[datos: 433 octetos]") and our annotation, not the line sent
            body = (said.group(1) or "") + (" " + body.split("    # ", 1)[1] if "    # " in body else "")
        body = re.sub(r"\b[\w-]+\.[\w.-]+", "", body)  # check ids, host names, file names
        if body:
            out.append(body)
    return out


def test_a_class_graded_in_spanish_has_no_english_sentence_in_its_pages_or_console(tmp_path):
    """``grade --class --lang es`` (issue #13 item 5): the class report, each scenario's ladder page,
    the gradebook's column names and the console's lines are Spanish, on a real run of the CLI
    over a class of two (a solution and a broken copy of it)."""
    from mailtrace.knowledge import messages
    from mailtrace.transcript.jsonl import read_jsonl

    subs = tmp_path / "subs"
    (subs / "ana").mkdir(parents=True)
    solution = (ROOT / "solutions" / "smtp-client" / "smtp_client.py").read_text()
    (subs / "ana" / "smtp_client.py").write_text(solution)
    assert "formatdate(" in solution
    (subs / "luis.py").write_text(solution.replace("formatdate(", "(lambda *a, **k: 'yesterday')("))
    out = tmp_path / "notas"
    chosen = ["one-recipient", "all-recipients-refused", "no-server"]
    run = _grade("smtp-client", str(subs), "--class", "--lang", "es", "--seed", "4", "-o", str(out),
                 *[x for s in chosen for x in ("--scenario", s)])
    assert run.returncode == 0, run.stderr
    console = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert any("corrigiendo smtp-client" in line for line in console), console
    assert any("2 entregas corregidas" in line for line in console), console
    # the console without paths and the last student's "name: score" (names, not words)
    leftovers = [line for line in console
                 if CLASS_ENGLISH.search(re.sub(r"\S*/\S*|\b[\w-]+\.[\w.-]+|\w+: [\d.]+/[\d.]+", "", line))]
    assert not leftovers, "\n".join(leftovers)

    with open(out / "gradebook.csv", encoding="utf-8") as f:
        header = next(csv.reader(f))
    # column names are identifiers (an LMS import reads them), the same in every language
    assert header[:5] == ["student", "score", "max_score", "seed", "error"] and "smtp.headers" in header

    page = (out / "report.html").read_text("utf-8")
    assert "lang='es'" in page and "informe de la clase" in page
    # what the programs wrote to stderr is theirs, not ours
    summary = re.escape("<summary>" + html.escape(messages.text("grading", "class.stderr", "es")) + "</summary><pre>")
    assert re.search(summary + r"error: ", page), "no scenario had stderr: the stderr section is not exercised"
    ours = _page_words(re.sub(f"({summary}).*?(</pre>)", r"\1\2", page, flags=re.S))
    assert any(line.startswith("Se esperaba: un Date en el formato del RFC 5322") for line in ours), ours
    assert any("transcripción anotada" in line for line in ours)
    leftovers = [line for line in ours if CLASS_ENGLISH.search(line) and not line.startswith("Ocurrió: Date:")]
    assert not leftovers, "\n".join(leftovers)

    # each scenario's own page: the ladder's words are Spanish; the dialogue itself stays as it was
    pages = sorted((out / "transcripts").rglob("*.html"))
    assert {p.parent.name for p in pages} == {"ana", "luis"}
    for ladder in pages:
        said = [e.raw.decode("utf-8", "replace") for e in read_jsonl(ladder.with_suffix(".jsonl")) if e.raw]
        words = _page_words(ladder.read_text("utf-8"),
                            tuple(part for s in said for part in s.splitlines() if part.strip()))
        assert any("Anotaciones" in line for line in words), ladder
        leftovers = [line for line in words if CLASS_ENGLISH.search(line)]
        assert not leftovers, f"{ladder}:\n" + "\n".join(leftovers)


def test_the_instructors_mistakes_are_said_in_spanish(tmp_path):
    """An unknown exercise or scenario, an empty class folder: the CLI's message in the chosen language."""
    prog = ROOT / "solutions" / "smtp-client" / "smtp_client.py"
    r = _grade("no-such-exercise", str(prog), "--lang", "es", "--network", "host")
    assert r.returncode != 0 and "no existe el ejercicio 'no-such-exercise'" in r.stderr and "Traceback" not in r.stderr
    r = _grade("smtp-client", str(prog), "--scenario", "nope", "--lang", "es", "--network", "host")
    assert r.returncode != 0 and "escenarios desconocidos: nope" in r.stderr, r.stderr
    (tmp_path / "vacia").mkdir()
    r = _grade("smtp-client", str(tmp_path / "vacia"), "--class", "--lang", "es", "--network", "host")
    assert r.returncode != 0 and "no hay ninguna entrega en" in r.stderr, r.stderr
    r = _grade("smtp-client", str(prog), "--class", "--lang", "es", "--network", "host")
    assert r.returncode != 0 and "--class necesita una carpeta de entregas" in r.stderr, r.stderr
    for line in r.stderr.splitlines():
        assert not ENGLISH.search(line.replace("Error:", "")), line  # click's own "Error:" prefix aside


def test_an_exercise_configuration_error_is_data_in_both_languages():
    from mailtrace.grading.exercise import ExerciseError

    error = ExerciseError("exercise.scenario-unknown-check", path="scenarios/a.toml", scenario="x", check="smtp.nope")
    assert str(error) == "scenarios/a.toml: scenario x: unknown check 'smtp.nope'"
    assert error.text("es") == "scenarios/a.toml: escenario x: comprobación desconocida 'smtp.nope'"
