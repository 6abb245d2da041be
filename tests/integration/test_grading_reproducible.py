"""The same submission and seed give the same report, on a loaded machine too (issue #13).

A client that does not wait for the reply to its QUIT (it closes at once) used to get a score
that depended on whether the scripted server had written its reply when the close was read.
It is graded 10 times with one seed while two CPU burners load the machine; the JSON reports
must be identical once the run's own timestamps are set aside: the report's start time and
durations, the uid in ``enforced``, and in transcripts the client's Date/Message-ID lines (the
program's clock and randomness), the lab's queue id and an IMAP mailbox's UIDVALIDITY (the
store's clock).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import IDLE_TIMEOUT, grade
from mailtrace.grading.report import to_json

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / "smtp-client" / "smtp_client.py"
RUNS = 10
TIMESTAMPS = [
    (re.compile(r"(C: Date: )[^\n]*"), r"\1<date>"),
    (re.compile(r"(C: Message-ID: )[^\n]*"), r"\1<message-id>"),
    (re.compile(r"queued as [0-9a-f.]+"), "queued as <id>"),
    (re.compile(r"UIDVALIDITY \d+"), "UIDVALIDITY <n>"),  # the IMAP store's clock (RFC 3501 §2.3.1.1)
]


def racy_client(tmp_path: Path) -> Path:
    """The reference client, but QUIT is sent and the socket closed without reading the 221."""
    source = SOLUTION.read_text()
    old = '        conn.command("QUIT")\n'
    assert old in source
    prog = tmp_path / "smtp_client.py"
    prog.write_text(source.replace(old, '        conn.send_line("QUIT")\n'))
    return prog


def normalised(report) -> str:
    data = json.loads(to_json(report))
    for key in ("started", "duration", "enforced"):
        data.pop(key)
    for scenario in data["scenarios"]:
        scenario.pop("duration")
        texts = [scenario] + scenario["checks"]
        for item in texts:
            for key in ("transcript", "feedback"):
                for pattern, repl in TIMESTAMPS:
                    if key in item:
                        item[key] = pattern.sub(repl, item[key])
    return json.dumps(data, indent=1, sort_keys=True)


@pytest.mark.slow
def test_one_seed_gives_one_report_under_load(tmp_path):
    ex = load_exercise("smtp-client")
    prog = racy_client(tmp_path)
    quick = [s.name for s in ex.scenarios if (s.timeout or ex.timeout) < IDLE_TIMEOUT
             and s.name != "silent-server"]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        reports = [normalised(grade(ex, prog, seed=4242, jobs=4, scenarios=quick)) for _ in range(RUNS)]
    finally:
        for b in burners:
            b.kill()
            b.wait()
    for i, text in enumerate(reports[1:], 2):
        assert text == reports[0], f"run {i} differs from run 1"


@pytest.mark.slow
def test_one_recv_per_command_imap_client_gets_one_grade_per_seed(defective):
    """A client doing one recv() per command read the reply to UID STORE whole or in part by chance:
    the core ended it after a second store job, and the scripted server wrote it in two writes.
    Graded 5 times with one seed (the mutation test's), it gets one score and loses the same checks
    (only its own, imap.whole-reply), with one report."""
    from defects import STANDALONE  # (the mutation test expects this client to lose this check only)

    assert ("imap-client", "imap/one_recv_per_command.py", "imap.whole-reply") in STANDALONE
    ex = load_exercise("imap-client")
    prog = defective["imap/one_recv_per_command.py"]
    reports = [grade(ex, prog, seed=20261126, jobs=4) for _ in range(5)]
    assert {r.lost() and tuple(sorted(r.lost())) for r in reports} == {("imap.whole-reply",)}
    assert len({r.score for r in reports}) == 1
    texts = [normalised(r) for r in reports]
    for i, text in enumerate(texts[1:], 2):
        assert text == texts[0], f"run {i} differs from run 1"
