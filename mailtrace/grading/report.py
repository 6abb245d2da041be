"""Grading reports: the data, and its renderings (JSON, text/rich, JUnit XML, Gradescope JSON).

The JSON form is documented in mailtrace/grading/README.md; its top-level keys are stable:
``exercise, submission, score, max_score, seed, scenarios[] {name, checks[] {id, passed,
points, max_points, feedback}}`` plus extra keys (``format``, ``enforced``...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from xml.sax import saxutils

#: characters XML 1.0 forbids even as references (a program's stderr may hold ESC, BEL, NUL)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def visible(text: str) -> str:
    """``text`` with the control characters a document cannot hold written as ``\\xNN``."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


#: what a terminal must not receive from a program's output: C0 controls but newline and tab (ESC
#: starts sequences that clear the screen, retitle the window, move the cursor over the score; CR
#: overwrites a line), DEL and the C1 controls (0x9b is CSI on some terminals)
_NOT_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def terminal_safe(text: str) -> str:
    """``text`` for a terminal or a plain-text file: every control character but newline and
    tab written as ``\\xNN``, so a student's output cannot drive the instructor's terminal."""
    return _NOT_TERMINAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def escape(text: str, entities: dict | None = None) -> str:
    """XML-escape ``text`` after making its control characters visible (JUnit stays valid XML)."""
    return saxutils.escape(visible(text), entities or {})

FORMAT_VERSION = 1


@dataclass
class CheckResult:
    id: str
    title: str
    passed: bool
    points: float
    max_points: float
    feedback: str = ""
    visibility: str = "visible"
    judged: bool = True  # False: not judged here (another check took the points for this mistake)
    unobserved: bool = False  # could not be seen: the dialogue stopped before it (an earlier failure)
    excluded: bool = False  # unobserved, with the failure to fix first named: weighted out of the score

    def to_dict(self) -> dict:
        d = {"id": self.id, "title": self.title, "passed": self.passed, "points": round(self.points, 2),
             "max_points": round(self.max_points, 2), "feedback": self.feedback, "visibility": self.visibility,
             "judged": self.judged}
        if self.excluded:
            d["excluded"] = True
        return d


@dataclass
class ScenarioResult:
    name: str
    description: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    status: str = ""
    exit_code: int | None = None
    duration: float = 0.0
    stdout: str = ""
    stderr: str = ""
    transcript: str = ""
    events: list = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)  # outputs left out when collecting (FIFOs, size)
    worked: bool | None = None  # the program did some of the exercise's work (checks.common.did_work)
    ran: bool = True  # False: the scenario could not run (a failed build, a grader error)
    # a student's server cut the dialogue short: its unseen checks are weighted out of what it
    # lost (fix the stop first) but not out of the score (they were not earned either)
    stopped: bool = False

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> float:
        """The points at stake here (a check weighted out because it could not be seen is not)."""
        return sum(c.max_points for c in self.checks if not c.excluded)

    @property
    def full_points(self) -> float:
        return sum(c.max_points for c in self.checks)

    def to_dict(self, transcripts: bool = True) -> dict:
        d = {"name": self.name, "description": self.description, "status": self.status,
             "exit_code": self.exit_code, "duration": self.duration,
             "points": round(self.points, 2), "max_points": round(self.max_points, 2),
             "checks": [c.to_dict() for c in self.checks]}
        if self.notes:
            d["notes"] = list(self.notes)
        if transcripts:
            d.update(stdout=self.stdout, stderr=self.stderr, transcript=self.transcript)
        return d


@dataclass
class Report:
    exercise: str
    submission: str
    seed: int
    started: float = 0.0
    duration: float = 0.0
    scenarios: list[ScenarioResult] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0
    enforced: tuple[str, ...] = ()
    error: str = ""
    capped: str = ""  # why the score was capped (a failed policy check, exercise.toml policy_cap)
    notes: list[str] = field(default_factory=list)  # what copying the submission refused, and why
    show_secrets: bool = False  # transcripts keep passwords (grade --show-secrets); not in the JSON
    diagnosis: str = ""  # the one thing to fix first (a syntax error, a crash at start)
    lang: str = "en"  # the language of the report's texts (grade --lang)

    def finish(self) -> None:
        """Sum the points.  Checks that could not be seen (``excluded``: an earlier failure stopped
        the dialogue, and that failure already cost its points) are weighted out: the score is
        the share earned of the points that were judged, over the exercise's full points."""
        earned = sum(s.points for s in self.scenarios)
        judged = sum(s.full_points if s.stopped else s.max_points for s in self.scenarios)
        full = sum(s.full_points for s in self.scenarios)
        self.max_score = round(full, 2)
        self.score = round(earned * full / judged, 2) if judged > 0 else 0.0
        self.score = min(self.score, self.max_score)

    def checks_by_id(self) -> dict[str, tuple[float, float]]:
        """id -> (points, max_points) summed over scenarios."""
        out: dict[str, list[float]] = {}
        for s in self.scenarios:
            for c in s.checks:
                if c.excluded:
                    continue  # not judged (weighted out): neither earned nor lost
                acc = out.setdefault(c.id, [0.0, 0.0])
                acc[0] += c.points
                acc[1] += c.max_points
        return {k: (round(v[0], 4), round(v[1], 4)) for k, v in out.items()}

    def lost(self) -> dict[str, float]:
        """Checks that lost points, and how many."""
        return {k: round(m - p, 4) for k, (p, m) in self.checks_by_id().items() if m - p > 1e-6}

    def to_dict(self, transcripts: bool = True) -> dict:
        return {"format": f"mailtrace-grade/{FORMAT_VERSION}", "exercise": self.exercise,
                "submission": self.submission, "seed": self.seed, "score": self.score,
                "max_score": self.max_score, "started": self.started, "duration": self.duration,
                "enforced": list(self.enforced), "error": self.error, "capped": self.capped,
                "notes": list(self.notes), "diagnosis": self.diagnosis,
                "scenarios": [s.to_dict(transcripts) for s in self.scenarios]}


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def to_junit(report: Report) -> str:
    """JUnit XML: one testsuite per scenario, one testcase per check (GitHub Classroom, CI); a
    check weighted out (it could not be seen) is a skipped test that names the check to fix."""
    cases = sum(len(s.checks) for s in report.scenarios)
    failures = sum(1 for s in report.scenarios for c in s.checks if not c.passed and not c.excluded)
    skipped = sum(1 for s in report.scenarios for c in s.checks if c.excluded)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="{escape(report.exercise)}" tests="{cases}" failures="{failures}" '
           f'skipped="{skipped}" time="{report.duration:.3f}">']
    for s in report.scenarios:
        fails = sum(1 for c in s.checks if not c.passed and not c.excluded)
        skips = sum(1 for c in s.checks if c.excluded)
        out.append(f'  <testsuite name="{escape(s.name)}" tests="{len(s.checks)}" failures="{fails}" '
                   f'skipped="{skips}" time="{s.duration:.3f}">')
        for c in s.checks:
            name = escape(f"{c.id} ({c.points:g}/{c.max_points:g})", {'"': "&quot;"})
            out.append(f'    <testcase classname="{escape(report.exercise)}.{escape(s.name)}" name="{name}">')
            if c.excluded:
                out.append(f'      <skipped message="{escape(c.title, {chr(34): "&quot;"})}">'
                           f"{escape(c.feedback)}</skipped>")
            elif not c.passed:
                out.append(f'      <failure message="{escape(c.title, {chr(34): "&quot;"})}">'
                           f"{escape(c.feedback)}</failure>")
            out.append("    </testcase>")
        if s.stderr:
            out.append(f"    <system-err>{escape(s.stderr)}</system-err>")
        out.append("  </testsuite>")
    out.append(f"  <!-- {escape(_heading(report))}; {report.score:g}/{report.max_score:g} -->")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def to_gradescope(report: Report) -> str:
    """Gradescope's results.json: one test per (scenario, check), visibility per check; a check
    weighted out (it could not be seen) has no points at stake and says which check to fix."""
    from mailtrace.grading.checks import text

    tests = []
    for s in report.scenarios:
        for c in s.checks:
            tests.append({"name": f"{s.name}: {c.title}", "number": c.id, "score": round(c.points, 4),
                          "max_score": 0 if c.excluded else round(c.max_points, 4), "visibility": c.visibility,
                          "status": "passed" if c.passed else "failed",
                          "output": c.feedback or (text("report.passed", report.lang) if c.passed else "")})
    out = {"score": report.score, "execution_time": report.duration, "visibility": "visible",
           "stdout_visibility": "hidden",
           "output": _heading(report)
                     + (f"\n{report.error}" if report.error else "")
                     + (f"\n{report.diagnosis}" if report.diagnosis else "")
                     + (f"\n{report.capped}" if report.capped else ""),
           "tests": tests}
    if report.error:
        out["score"] = 0
    return json.dumps(out, indent=2, ensure_ascii=False)


def _heading(report: Report) -> str:
    from mailtrace.grading.checks import text

    return text("report.heading", report.lang, exercise=report.exercise, seed=report.seed)


def to_text(report: Report, *, verbose: bool = False) -> str:
    from mailtrace.grading.checks import text

    lang = report.lang
    lines = [f"mailtrace grade: {report.exercise}  {report.submission}",
             f"{text('report.score', lang)} {report.score:g} / {report.max_score:g}    "
             + text("report.seed", lang, seed=report.seed)]
    if report.error:
        lines.append(f"{text('report.error', lang)}: {report.error}")
    if report.diagnosis:
        lines.append(f"{text('report.fix-first', lang)}: {report.diagnosis}")
    if report.capped:
        lines.append(f"{text('report.capped', lang)}: {report.capped}")
    lines.extend(f"{text('report.note', lang)}: {n}" for n in report.notes)
    for s in report.scenarios:
        lines.append("")
        lines.append(f"== {s.name}: {s.points:.2f}/{s.max_points:.2f}  [{s.status}]  {s.description}")
        for c in s.checks:
            if c.excluded:
                lines.append(f"  {text('report.skip', lang)} {c.id:28} {text('report.not-judged', lang)}  {c.title}")
                lines.extend("       " + x for x in c.feedback.splitlines())
                continue
            mark = text("report.pass" if c.passed else "report.fail", lang)
            lines.append(f"  {mark} {c.id:28} {c.points:5.2f}/{c.max_points:<5.2f} {c.title}")
            if not c.passed and c.feedback:
                lines.extend("       " + x for x in c.feedback.splitlines())
        if verbose and s.transcript:
            lines.append(f"  {text('report.transcript', lang)}:")
            lines.extend("    " + x for x in s.transcript.splitlines())
    if report.enforced:
        lines.append("")
        lines.append(f"{text('report.sandbox', lang)}: " + "; ".join(report.enforced))
    return terminal_safe("\n".join(lines)) + "\n"


def print_rich(report: Report, console) -> None:
    from rich.markup import escape as markup_escape
    from rich.table import Table

    from mailtrace.grading.checks import text

    lang = report.lang

    def resc(value: str) -> str:  # rich markup escaped, and no control character of the program's
        return markup_escape(terminal_safe(value))

    colour = "green" if report.score >= report.max_score - 1e-6 else "yellow" if report.score else "red"
    console.print(f"[bold]{resc(report.exercise)}[/bold]  {resc(report.submission)}")
    console.print(f"{text('report.score', lang)} [bold {colour}]{report.score:g} / {report.max_score:g}[/]   "
                  + resc(text("report.seed", lang, seed=report.seed)))
    if report.error:
        console.print(f"[red]{text('report.error', lang)}:[/red] {resc(report.error)}")
    if report.diagnosis:
        console.print(f"[bold red]{text('report.fix-first', lang)}:[/bold red] {resc(report.diagnosis)}")
    if report.capped:
        console.print(f"[red]{text('report.capped', lang)}:[/red] {resc(report.capped)}")
    for note in report.notes:
        console.print(f"[yellow]{text('report.note', lang)}:[/yellow] {resc(note)}")
    for s in report.scenarios:
        table = Table(title=f"{s.name} — {s.points:.2f}/{s.max_points:.2f} — {s.status}", title_justify="left",
                      show_header=False, box=None, padding=(0, 1))
        for c in s.checks:
            if c.excluded:
                table.add_row("[dim]–[/]", resc(c.id), resc(text("report.not-judged", lang)), resc(c.title))
                continue
            table.add_row("[green]✔[/]" if c.passed else "[red]✘[/]", resc(c.id),
                          f"{c.points:.2f}/{c.max_points:.2f}", resc(c.title))
        console.print(table)
        for c in s.checks:
            if not c.passed and c.feedback:
                console.print(f"    [{'dim' if c.excluded else 'red'}]{resc(c.id)}[/]")
                for line in c.feedback.splitlines():
                    style = "bold red" if line.lstrip().startswith(">>") else ""
                    console.print(f"      [{style}]{resc(line)}[/]" if style else f"      {resc(line)}")
    if report.enforced:
        console.print(f"[dim]{text('report.sandbox', lang)}: " + resc("; ".join(report.enforced)) + "[/dim]")
