"""``mailtrace grade`` and ``mailtrace gradescope`` end to end: formats, class mode, the
Gradescope zip run as Gradescope runs it, and hostile submissions contained."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace_cli import MAILTRACE, shim
from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import grade
from mailtrace.grading.sandbox import Limits

ROOT = Path(__file__).resolve().parents[2]
SMTP = ROOT / "solutions" / "smtp-client" / "smtp_client.py"
MIME = ROOT / "solutions" / "mime-compose" / "mime_compose.py"


def invoke(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_grade_json_has_the_documented_keys():
    r = invoke("grade", "smtp-client", str(SMTP), "--format", "json", "--scenario", "one-recipient",
               "--scenario", "rcpt-550-one-of-two", "--seed", "5", "--network", "host")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert {"exercise", "submission", "score", "max_score", "seed", "scenarios"} <= set(d)
    assert d["seed"] == 5 and d["exercise"] == "smtp-client"
    names = [s["name"] for s in d["scenarios"]]
    assert names == ["policy", "one-recipient", "rcpt-550-one-of-two"]
    for s in d["scenarios"]:
        for c in s["checks"]:
            assert {"id", "passed", "points", "max_points", "feedback"} <= set(c)
            assert c["passed"], c
    assert "C: MAIL FROM:<" in d["scenarios"][1]["transcript"]


def test_grade_junit_text_and_errors(tmp_path):
    out = tmp_path / "r.xml"
    r = invoke("grade", "mime-compose", str(MIME), "--format", "junit", "-o", str(out), "--network", "host")
    assert r.exit_code == 0, r.output
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0" and int(root.get("tests")) > 10
    r = invoke("grade", "mime-compose", str(MIME), "--format", "text", "--network", "host")
    assert "score 100 / 100" in r.output
    r = CliRunner().invoke(main, ["grade", "no-such-exercise", str(MIME), "--network", "host"])
    assert r.exit_code != 0 and "no exercise" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["grade", "mime-compose", str(MIME), "--scenario", "nope", "--network", "host"])
    assert r.exit_code != 0 and "unknown scenario" in r.output
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "a.txt").write_text("x")
    (empty / "b.py").write_text("x")
    (empty / "c.py").write_text("x")
    r = CliRunner().invoke(main, ["grade", "mime-compose", str(empty), "--format", "json", "--network", "host"])
    assert r.exit_code == 1 and "no mime_compose.py" in json.loads(r.output)["error"]


def test_class_mode_writes_gradebook_json_and_html(tmp_path, defective):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(SMTP, subs / "ana.py")
    (subs / "luis").mkdir()
    shutil.copy(SMTP, subs / "luis" / "smtp_client.py")
    shutil.copy(defective["smtp/no_quit.py"], subs / "marta.py")
    out = tmp_path / "grades"
    r = invoke("grade", "smtp-client", str(subs), "--class", "--jobs", "2", "-o", str(out), "--network", "host",
               "--scenario", "one-recipient", "--scenario", "all-recipients-refused", "--seed", "9")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out / "gradebook.csv")))
    assert [row["student"] for row in rows] == ["ana", "luis", "marta"]
    assert rows[0]["score"] == rows[0]["max_score"] == rows[1]["score"]
    assert float(rows[2]["score"]) < float(rows[2]["max_score"]) and float(rows[2]["smtp.quit"]) == 0
    data = json.loads((out / "class.json").read_text())
    assert len(data["students"]) == 3 and data["seed"] == 9
    assert len({s["seed"] for s in data["students"]}) == 3  # each student gets their own data
    html = (out / "report.html").read_text()
    assert "<svg" in html and "smtp.quit" in html and "marta" in html and "annotated transcript" in html
    assert (out / "transcripts" / "marta" / "one-recipient.html").is_file()
    from mailtrace.transcript.jsonl import read_jsonl

    events = list(read_jsonl(out / "transcripts" / "marta" / "one-recipient.jsonl"))
    assert any(e.verb == "MAIL" for e in events)


def test_gradescope_zip_runs_as_gradescope_runs_it(tmp_path):
    zpath = tmp_path / "autograder.zip"
    r = invoke("gradescope", "mime-compose", "-o", str(zpath))
    assert r.exit_code == 0, r.output
    names = zipfile.ZipFile(zpath).namelist()
    assert {"setup.sh", "run_autograder", "exercise/exercise.toml", "mailtrace-src/pyproject.toml"} <= set(names)
    root = tmp_path / "autograder"
    zipfile.ZipFile(zpath).extractall(root / "source")
    (root / "submission").mkdir()
    shutil.copy(MIME, root / "submission" / "mime_compose.py")
    run = root / "source" / "run_autograder"
    run.chmod(0o755)
    env = dict(os.environ, MAILTRACE_AUTOGRADER_ROOT=str(root), MAILTRACE_BIN=str(shim()))
    proc = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 100, json.dumps(results, indent=1)[:6000]
    assert results["tests"] and all({"name", "score", "max_score", "visibility"} <= set(t) for t in results["tests"])
    # a broken submission still gets a valid results.json
    shutil.rmtree(root / "submission")
    (root / "submission").mkdir()
    (root / "results" / "results.json").unlink()
    proc = subprocess.run(["bash", str(run)], env=env, capture_output=True, text=True, timeout=120)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "mime_compose.py" in results["output"]


HOSTILE = {
    "infinite_loop": "while True:\n    pass\n",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "memory_hog": "x = bytearray(4 * 1024 ** 3)\n",
    "output_flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "writes_outside": ("import os\nfor p in ['/etc/pwned-by-student', os.path.expanduser('~/../pwned'), '/tmp/pwned-by-student']:\n"
                       "    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n        print('blocked', p, e)\n"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_submissions_are_contained(tmp_path, name):
    prog = tmp_path / "mime_compose.py"
    prog.write_text(HOSTILE[name])
    ex = load_exercise("mime-compose")
    report = grade(ex, prog, scenarios=["text-only"], limits=Limits(timeout=2, cpu_seconds=2), jobs=1)
    scenario = report.scenarios[-1]
    assert scenario.name == "text-only"
    assert report.score < report.max_score  # it costs the scenario...
    if name in ("infinite_loop", "output_flood"):
        assert "killed" in scenario.status
    if name == "memory_hog":
        assert "MemoryError" in scenario.stderr
    if name == "output_flood":
        assert len(scenario.stdout) <= 2000
    if name == "writes_outside":
        assert not Path("/etc/pwned-by-student").exists()
        assert not Path("/tmp/pwned-by-student").exists() or os.geteuid() != 0
    # ...and nothing of it is left running (as root each program runs as its own uid)
    uids = [int(m) for e in report.enforced for m in re.findall(r"\buid (\d+)", e)]
    assert uids or os.geteuid() != 0
    for uid in uids:
        left = [p for p in os.listdir("/proc") if p.isdigit() and _owner(p) == uid and _alive(p)]
        assert not left, f"processes of uid {uid} left: {left}"


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # zombies wait for init to reap them
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("ip"),
                    reason="a private network namespace needs root and iproute2")
def test_network_is_loopback_only_when_root(tmp_path):
    prog = tmp_path / "mime_compose.py"
    prog.write_text("import socket, sys\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
                    "    print('CONNECTED')\nexcept OSError as e:\n    print('BLOCKED', e)\n")
    proc = subprocess.run([*MAILTRACE, "grade", "mime-compose", str(prog), "--format", "json",
                           "--scenario", "text-only", "--network", "private"], capture_output=True, text=True,
                          timeout=60)
    d = json.loads(proc.stdout)
    assert "network: private namespace with loopback only" in d["enforced"]
    assert "BLOCKED" in d["scenarios"][-1]["stdout"]


@pytest.mark.parametrize("exercise", sorted(p.name for p in (ROOT / "exercises").iterdir()
                                              if (p / "exercise.toml").is_file()))
def test_an_untouched_skeleton_scores_zero(tmp_path, exercise):
    """The skeleton as `mailtrace exercises copy` hands it out, graded as a student would: it may
    exit 2 on a refused connection (its given code) and imports nothing banned, but it did none of
    the exercise's work, so it scores 0 and the report says why (it scored 7.27/100 for smtp-client,
    68/100 for pop3-server)."""
    copy = subprocess.run([*MAILTRACE, "exercises", "copy", exercise, str(tmp_path / exercise)],
                          capture_output=True, text=True, timeout=60)
    assert copy.returncode == 0, copy.stderr
    program = tmp_path / exercise / load_exercise(exercise).program
    assert program.is_file()
    proc = subprocess.run([*MAILTRACE, "grade", exercise, str(program), "--seed", "1", "--format", "json"],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    assert report["score"] == 0, [(s["name"], c["id"], c["points"]) for s in report["scenarios"]
                                  for c in s["checks"] if c["points"]]
    assert "did none of the exercise's work" in report["diagnosis"]
    es = subprocess.run([*MAILTRACE, "grade", exercise, str(program), "--seed", "1", "--format", "json",
                         "--lang", "es"], capture_output=True, text=True, timeout=600)
    assert "esqueleto" in json.loads(es.stdout)["diagnosis"]


@pytest.mark.parametrize("exercise", ["smtp-client", "pop3-client", "imap-client"])
def test_a_program_that_never_connects_keeps_no_points_for_want_of_evidence(tmp_path, exercise):
    """Finding F15 (independent grader review): a hung program kept "ends with QUIT" and the other
    "not judged" points although it never opened a session."""
    ex = load_exercise(exercise)
    prog = tmp_path / ex.program
    prog.write_text("import time\ntime.sleep(60)\n")
    chosen = [s.name for s in ex.scenarios if not s.timeout and not s.server.get("none")]
    report = grade(ex, prog, scenarios=chosen, limits=Limits(timeout=1), jobs=4)
    assert report.score == 0, report.checks_by_id()  # not even the import policy: it did nothing


def _processes_running(marker: str, besides: int = 0) -> list[str]:
    """The processes whose command line holds ``marker`` (but ``besides``: the grader itself)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != besides:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.parametrize("class_mode", [False, True])
def test_ctrl_c_stops_grading_now_and_leaves_nothing_running(tmp_path, class_mode):
    """Ctrl-C during a class of programs that sleep: the queued scenarios never start and the
    running programs end, instead of the grader going on for minutes after "Aborted!" (found by
    an independent tester: 215 s for a class of 4)."""
    import signal
    import time

    from waiting import wait_until

    marker = f"sleeper_{os.getpid()}_{int(class_mode)}"
    program = f"import time\ntime.sleep(600)  # {marker}\n"
    if class_mode:
        target = tmp_path / "class"
        for student in ("ana", "ben", "carla"):
            (target / student).mkdir(parents=True)
            (target / student / f"{marker}.py").write_text(program)
        args = ["grade", "pop3-client", "--class", str(target), "-o", str(tmp_path / "out")]
    else:
        target = tmp_path / f"{marker}.py"
        target.write_text(program)
        args = ["grade", "pop3-client", str(target)]
    proc = subprocess.Popen(MAILTRACE + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_until(lambda: _processes_running(marker, besides=proc.pid), timeout=60, what="a student program running")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        try:
            _, err = proc.communicate(timeout=30)  # each program would sleep 8 s, ~20 scenarios each
        except subprocess.TimeoutExpired:
            raise AssertionError("the grader went on after Ctrl-C") from None
        assert proc.returncode != 0 and b"Traceback" not in err
        wait_until(lambda: not _processes_running(marker, besides=proc.pid), timeout=10, what="no student program left")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_submission_that_does_not_build_earns_nothing(tmp_path):
    """A Makefile whose build fails ran no scenario: the policy check (no banned import) is not
    earned on its own, as with a program that did none of the work (found by an independent tester)."""
    sub = tmp_path / "broken"
    sub.mkdir()
    (sub / "Makefile").write_text("all:\n\tfalse\n")
    report = grade(load_exercise("pop3-client"), sub, seed=3, scenarios=["three-messages"])
    assert report.score == 0 and "did not build" in report.diagnosis
    es = grade(load_exercise("pop3-client"), sub, seed=3, scenarios=["three-messages"], lang="es")
    assert es.score == 0 and "no se ha compilado" in es.diagnosis


def test_a_format_with_class_is_a_clear_usage_error(tmp_path):
    """--class writes gradebook.csv, class.json and report.html: a --format asked for with it
    is said to be for one submission, not silently ignored (found by an independent tester)."""
    (tmp_path / "ana").mkdir()
    res = subprocess.run(MAILTRACE + ["grade", "pop3-client", str(tmp_path), "--class", "--format", "junit",
                                      "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--format junit is for one submission" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()


def test_a_python_program_beside_a_makefile_is_graded_and_the_report_says_so(tmp_path):
    """The copied skeleton left beside a C program and its Makefile: the Python file is graded
    (it comes first) and the report says the Makefile was not used, and how to have it used
    (found by an independent tester: 0/100 'still the skeleton', the build never mentioned)."""
    sub = tmp_path / "student"
    sub.mkdir()
    shutil.copy(ROOT / "solutions" / "smtp-client" / "smtp_client.py", sub)
    (sub / "Makefile").write_text("all:\n\ttrue\n")
    report = grade(load_exercise("smtp-client"), sub, seed=3, scenarios=["one-recipient"])
    assert any("Makefile here was not used" in note and "remove smtp_client.py" in note for note in report.notes)
