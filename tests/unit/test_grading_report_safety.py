"""What a student's program prints never reaches the instructor's terminal as control codes.

The text and rich reports quote stderr, stdout and transcripts; a program that prints ESC
sequences (clear the screen, retitle the window, move the cursor up over the score), BEL, NUL,
CR or a C1 CSI would otherwise drive the terminal of whoever reads the report."""

import io
import json
import xml.dom.minidom

from rich.console import Console

from mailtrace.grading import report as rep

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x1b[1A\rPASS 100/100\x00\x9b31m\x7f end"


def _report() -> rep.Report:
    check = rep.CheckResult(id="pop3.exit-status", title="Exit status", passed=False, points=0.0,
                            max_points=1.0, feedback=f"Happened: exit status 3; stderr: {HOSTILE}")
    scenario = rep.ScenarioResult(name="noise", description="d", checks=[check], status="exit status 3",
                                  stderr=HOSTILE, stdout=HOSTILE, transcript=f"S: +OK {HOSTILE}")
    out = rep.Report(exercise="pop3-client", submission=f"ana{HOSTILE}", seed=1, scenarios=[scenario],
                     notes=[f"note {HOSTILE}"])
    out.finish()
    return out


def _no_controls(text: str) -> None:
    bad = [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, f"control characters reached the report: {bad!r}"


def test_text_report_shows_control_characters_as_escapes():
    text = rep.to_text(_report(), verbose=True)
    _no_controls(text)
    assert "\\x1b[2J" in text and "\\x07" in text and "\\x0d" in text and "\\x9b" in text


def test_rich_report_shows_control_characters_as_escapes():
    buffer = io.StringIO()
    rep.print_rich(_report(), Console(file=buffer, force_terminal=False, width=200, highlight=False))
    _no_controls(buffer.getvalue())
    assert "\\x1b]0;pwned" in buffer.getvalue()


def test_documents_stay_valid_whatever_the_program_printed():
    r = _report()
    xml.dom.minidom.parseString(rep.to_junit(r))
    assert json.loads(rep.to_json(r))["scenarios"][0]["stderr"] == HOSTILE  # JSON keeps the bytes, escaped
    json.loads(rep.to_gradescope(r))
