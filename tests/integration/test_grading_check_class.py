"""Regressions found by grading an independently written class (issue #13, grader-check):
each test grades a small program for real, the way an instructor runs `mailtrace grade`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade


def _write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source))
    return folder


def test_a_server_that_crashes_at_start_is_diagnosed_as_such(tmp_path):
    """A POP3 server that dies reading a file it expects got "did none of the exercise's work
    (it is still the skeleton)": the scenarios skipped after the first crash (the server never
    listened) counted as runs that showed no crash.  It is a crash at start, and says so."""
    folder = _write(tmp_path / "ana", "pop3_server.py", """\
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--port"); p.add_argument("--maildir"); p.add_argument("--users")
        a = p.parse_args()
        open(a.maildir + "/config.ini").read()
        """)
    report = grade(load_exercise("pop3-server"), folder, seed=3, jobs=2)  # every scenario: some are skipped
    assert report.score == 0
    assert "config.ini" in report.diagnosis and "FileNotFoundError" in report.diagnosis, report.diagnosis
    assert "skeleton" not in report.diagnosis
    # the scenarios skipped once the server never listened say so, not "exit status None"
    assert all("None" not in s.status for s in report.scenarios), [s.status for s in report.scenarios]
    es = grade(load_exercise("pop3-server"), folder, seed=3, jobs=1, scenarios=["lecture-session"], lang="es")
    assert es.diagnosis.startswith("El programa se detiene antes de hacer nada"), es.diagnosis


ROOT = Path(__file__).resolve().parents[2]
POP3_SERVER = ROOT / "solutions" / "pop3-server" / "pop3_server.py"


def test_a_pop3_server_without_byte_stuffing_loses_points_on_that_check_only(tmp_path):
    """A server that does not byte-stuff cut the message at its lone "." line; the grader's client
    then read the rest of the message as replies, and the one defect cost 17 points on five
    checks (commands, reply-syntax, top too).  What follows the cut in that session is not
    judged again: pop3d.byte-stuffing takes it, and it weighs more than the manners."""
    source = POP3_SERVER.read_text()
    stuffing = 'return data.replace(b"\\r\\n.", b"\\r\\n..") + b".\\r\\n"'
    assert stuffing in source
    folder = _write(tmp_path / "ana", "pop3_server.py",
                    source.replace(stuffing, 'return data + b".\\r\\n"').replace(
                        '        data = b"." + data\n', '        pass\n'))
    report = grade(load_exercise("pop3-server"), folder, seed=5, jobs=1, scenarios=["fetchmail-session"])
    checks = {c.id: c for s in report.scenarios for c in s.checks}
    assert not checks["pop3d.byte-stuffing"].passed
    lost = {c.id for c in checks.values() if c.points < c.max_points - 1e-9}
    assert lost == {"pop3d.byte-stuffing"}, [(checks[c].id, checks[c].feedback[:200]) for c in lost]
    heavier = [c for c in ("pop3d.top", "pop3d.uidl", "pop3d.lock", "pop3d.rset", "pop3d.sigterm")]
    weights = load_exercise("pop3-server").checks
    assert all(weights["pop3d.byte-stuffing"].points > weights[c].points for c in heavier)


def test_spanish_transcripts_word_the_close_reasons_in_spanish(tmp_path):
    """With --lang es the transcripts still said "session closed: scripted: closed after the
    greeting" and "client closed the connection" (free English text in the scripted server)."""
    folder = _write(tmp_path / "ana", "pop3_client.py", """\
        import socket, sys
        a = sys.argv
        s = socket.create_connection((a[a.index("--server") + 1], int(a[a.index("--port") + 1])), timeout=5)
        greeting = s.makefile("rb").readline()
        print(greeting.decode(errors="replace").strip(), file=sys.stderr)
        sys.exit(2)
        """)
    report = grade(load_exercise("pop3-client"), folder, seed=4, jobs=1, scenarios=["greeting-err"], lang="es")
    transcript = report.scenarios[-1].transcript
    assert "sesión" in transcript and "guion: cerrada tras el saludo" in transcript, transcript
    assert "scripted" not in transcript and "closed" not in transcript


def test_a_pop3_client_that_exits_0_after_a_refused_login_loses_more_than_a_missing_quit():
    """Exit 0 after -ERR to PASS tells a script the mail was fetched; it cost 1.4 of 100 (2.8 for
    both refusals), barely more than not sending QUIT after the refusal.  The scenarios where
    the exit status lies hold three shares now."""
    from mailtrace.grading.grader import share, weights

    exercise = load_exercise("pop3-client")
    per_share = weights(exercise)
    scenario = next(s for s in exercise.scenarios if s.name == "login-refused")
    lie = per_share["pop3.exit-status"] * share(scenario, "pop3.exit-status")
    no_quit = per_share["pop3.quit"] * share(scenario, "pop3.quit")
    assert lie >= 2.5 and lie >= 3 * no_quit, (lie, no_quit)


def test_fail_under_is_a_percentage_of_the_points_at_stake(tmp_path):
    """`grade ... --scenario X --fail-under 100` (one GitHub Classroom test per scenario) failed
    for a program with every point of X: the score of one scenario is out of its own points,
    and --fail-under compared it with 100."""
    import subprocess
    import sys

    prog = _write(tmp_path / "ana", "pop3_client.py", """\
        import socket, sys
        a = sys.argv
        try:
            socket.create_connection((a[a.index("--server") + 1], int(a[a.index("--port") + 1])), timeout=5)
        except OSError as exc:
            print(f"cannot connect: {exc}", file=sys.stderr)
            sys.exit(2)
        """) / "pop3_client.py"
    base = [sys.executable, "-m", "mailtrace", "grade", "pop3-client", str(prog), "--scenario", "no-server",
            "--format", "json", "--seed", "1"]
    full = subprocess.run(base + ["--fail-under", "100"], capture_output=True, text=True, timeout=120)
    report = json.loads(full.stdout)
    assert report["score"] == report["max_score"] < 100
    assert full.returncode == 0, full.stderr
    wrong = subprocess.run(base[:-2] + ["--seed", "1", "--scenario", "greeting-err", "--fail-under", "100"],
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "--fail-under 100" in wrong.stderr
