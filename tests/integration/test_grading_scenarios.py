"""The false passes of issue #13, each caught now by a scenario or a sharper check.

Every defective client is the reference solution with one change made here, at test time, so
the test fails if the defect stops being caught (and the reference itself scores every point
of the same scenarios: the checks stay narrow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade

from defects import apply_edits

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    # IMAP: STORE with a position in the list fetched, after UID FETCH (--unseen-only --mark-seen)
    "imap-store-by-position": ("imap-client", ["unseen-mark-seen"], "imap.flags", [
        ("        for uid in uids:\n", "        for pos, uid in enumerate(uids, 1):\n"),
        ('conn.command(f"UID STORE {uid} +FLAGS (\\\\Seen)")', 'conn.command(f"STORE {pos} +FLAGS (\\\\Seen)")'),
    ]),
    # SMTP: 251 (user not local; will forward) taken for a refusal
    "smtp-251-is-refusal": ("smtp-client", ["rcpt-251-forwarded"], "smtp.exit-status", [
        ("if code in (250, 251):", "if code == 250:"),
    ]),
    # SMTP: exit 2 after a 421/554 greeting with nothing on stderr
    "smtp-silent-exit-2": ("smtp-client", ["greeting-421", "greeting-554"], "smtp.exit-status", [
        ('            print(f"error: the server refused the session: {lines[-1]}", file=sys.stderr)\n', ""),
    ]),
    # POP3: never sends QUIT, so none of its DELEs is committed (RFC 1939 §6)
    "pop3-deletes-never-committed": ("pop3-client", ["delete"], "pop3.delete", [
        ('        ok, status = conn.command("QUIT")\n', '        ok, status = True, ""\n'),
    ]),
    # MIME: filename= without the quotes the statement asks for
    "mime-unquoted-filename": ("mime-compose", ["two-attachments"], "mime.attachments", [
        ('filename="{name}"', "filename={name}"),
    ]),
}


def solution(exercise: str) -> Path:
    ex = load_exercise(exercise)
    return ROOT / "solutions" / exercise / ex.program


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reference_passes_and_the_defect_is_caught_on_its_check(case, tmp_path):
    exercise, scenarios, check, edits = CASES[case]
    ex = load_exercise(exercise)
    reference = grade(ex, solution(exercise), seed=21, scenarios=scenarios)
    assert reference.score == reference.max_score, reference.lost()
    source = apply_edits(solution(exercise).read_text(), edits, case)
    prog = tmp_path / ex.program
    prog.write_text(source)
    report = grade(ex, prog, seed=21, scenarios=scenarios)
    assert check in report.lost(), report.lost()


def test_weights_rank_harm_as_a_teacher_would():
    """Lying about delivery after a refused message costs more than a missing QUIT there; an
    unstuffed dot more than the HELO fallback; a line over 998 octets more than base64 width."""
    from mailtrace.grading.grader import share, weights

    smtp = load_exercise("smtp-client")
    w = weights(smtp)
    refused = smtp.scenario("data-refused")
    assert w["smtp.exit-status"] * share(refused, "smtp.exit-status") > 4 * w["smtp.quit"] * share(refused, "smtp.quit")
    assert smtp.checks["smtp.dot-stuffing"].points > 3 * smtp.checks["smtp.helo-fallback"].points
    mime = load_exercise("mime-compose")
    assert mime.checks["mime.line-length"].points > mime.checks["mime.attachments"].points
    pop3 = load_exercise("pop3-client")
    assert pop3.checks["pop3.delete"].points > 2 * pop3.checks["pop3.quit"].points
    for ex in (smtp, mime, pop3, load_exercise("imap-client")):  # shares never change the total
        w = weights(ex)
        applied = {cid for sc in ex.scenarios for cid in sc.checks}
        total = sum(w[cid] * share(sc, cid) for sc in ex.scenarios for cid in sc.checks)
        assert total == pytest.approx(sum(ex.checks[cid].points for cid in applied))
