"""The server grader (exercises smtp-server, pop3-server): the reference solutions and correct
servers in other styles score full marks; each one-defect variant, made at test time from a
solution by the text substitutions of DEFECTS (nothing committed), loses points on the checks
named for its defect and nowhere else; broken servers (crash, never listen, wrong port, daemon,
silence) are reported clearly, quickly, and leave no process behind."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailtrace.grading.exercise import load_exercise
from mailtrace.grading.grader import Pools, grade

from defects import apply_edits

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ROOT / "tests" / "servers"
SOLUTIONS = {"smtp-server": ROOT / "solutions/smtp-server/smtp_server.py",
             "pop3-server": ROOT / "solutions/pop3-server/pop3_server.py"}
SEED = 20261207
pytestmark = pytest.mark.timeout(900)

#: (exercise, defect name, the checks it must lose points on, [(old, new), ...]); each
#: replacement must apply exactly once to the solution (a change to it that breaks one is noticed)
DEFECTS: list[tuple[str, str, set[str], list[tuple[str, str]]]] = [
    ("smtp-server", "rcpt-before-mail-accepted", {"smtpd.sequence"}, [
        ('''                if sender is None:
                    self.reply("503 5.5.1 Need MAIL before RCPT")
                elif''', "                if"),
    ]),
    ("smtp-server", "open-relay", {"smtpd.no-relay"}, [
        ("if domain.lower() != self.server.domain.lower():", "if False:"),
    ]),
    ("smtp-server", "no-unstuffing", {"smtpd.unstuff"}, [
        ('''            if line.startswith(b"."):
                line = line[1:]''', "            pass"),
    ]),
    ("smtp-server", "writes-into-new", {"smtpd.maildir"}, [
        ('tmp_path = os.path.join(mailbox, "tmp", name)', 'tmp_path = os.path.join(mailbox, "new", name)'),
    ]),
    ("smtp-server", "delivers-abandoned-message", {"smtpd.abort"}, [
        ("                return  # connection closed before the final dot: deliver nothing", "                break"),
    ]),
    # one client at a time: the others wait (and SIGTERM cannot stop it while one is connected)
    ("smtp-server", "one-client-at-a-time", {"smtpd.concurrency", "smtpd.sigterm"}, [
        ("class Server(socketserver.ThreadingTCPServer):", "class Server(socketserver.TCPServer):"),
    ]),
    ("smtp-server", "exit-status-1", {"smtpd.sigterm"}, [("    sys.exit(0)", "    sys.exit(1)")]),
    ("smtp-server", "traceback-on-unknown-command", {"smtpd.no-traceback"}, [
        ('''                self.reply("500 5.5.1 Command unrecognized")''',
         '''                import traceback
                try:
                    int(verb)
                except ValueError:
                    traceback.print_exc()
                self.reply("500 5.5.1 Command unrecognized")'''),
    ]),
    ("smtp-server", "quit-keeps-connection", {"smtpd.quit"}, [
        ('''                self.reply(f"221 2.0.0 {domain} closing connection")
                return''', '''                self.reply(f"221 2.0.0 {domain} closing connection")
                continue'''),
    ]),
    ("smtp-server", "two-codes-in-ehlo", {"smtpd.reply-syntax"}, [
        ('self.reply("250-8BITMIME")', 'self.reply("251-8BITMIME")'),
    ]),
    ("pop3-server", "deletes-on-dropped-connection", {"pop3d.no-update-on-drop"}, [
        ('''            line = self.read_line()
            if line == b"":
                return''', '''            line = self.read_line()
            if line == b"":
                line = b"QUIT\\r\\n"'''),
    ]),
    ("pop3-server", "sizes-of-the-file", {"pop3d.sizes"}, [
        ("self.size = len(self.data)", "self.size = os.path.getsize(path)"),
    ]),
    ("pop3-server", "no-lock", {"pop3d.lock"}, [("            if name in locked:", "            if False:")]),
    ("pop3-server", "uidl-changes", {"pop3d.uidl"}, [
        ('self.uid = os.path.basename(path).split(":")[0]', "self.uid = os.urandom(6).hex()"),
    ]),
    ("pop3-server", "rset-keeps-marks", {"pop3d.rset"}, [
        ('''            for m in messages:
                m.deleted = False''', '''            pass'''),
    ]),
    ("pop3-server", "retr-deleted-message", {"pop3d.bad-number"}, [
        ('''        if m.deleted:
            self.send("-ERR message already deleted")''', '''        if False:
            self.send("-ERR message already deleted")'''),
    ]),
    # poplib (the real client) un-stuffs what was never stuffed: it sees the same defect
    ("pop3-server", "stuffs-only-lone-dots", {"pop3d.byte-stuffing", "pop3d.real-client"}, [
        ('return data.replace(b"\\r\\n.", b"\\r\\n..") + b".\\r\\n"',
         'return data.replace(b"\\r\\n.\\r\\n", b"\\r\\n..\\r\\n") + b".\\r\\n"'),
    ]),
    ("pop3-server", "top-sends-everything", {"pop3d.top"}, [
        ("lines = body.split(b\"\\r\\n\")[:-1][: int(args[1])]", "lines = body.split(b\"\\r\\n\")[:-1]"),
    ]),
    ("pop3-server", "quit-keeps-deleted", {"pop3d.update"}, [("os.remove(m.path)", "pass")]),
    ("pop3-server", "pass-without-password-check", {"pop3d.auth"}, [
        ("        if self.server.users.get(name) != password:", "        if name not in self.server.users:"),
    ]),
    ("pop3-server", "stat-before-login", {"pop3d.state"}, [
        ('''                else:
                    self.send("-ERR not allowed before login (USER, PASS or QUIT)")''',
         '''                elif verb in ("STAT", "RETR"):
                    self.send("+OK 0 0")
                else:
                    self.send("-ERR not allowed before login (USER, PASS or QUIT)")'''),
    ]),
]

#: correct servers written apart from the reference solutions, in other styles
ALTERNATIVES = {"smtp_server_asyncio.py": "smtp-server", "smtp_server_select.py": "smtp-server",
                "pop3_server_asyncio.py": "pop3-server"}


def make_defective(exercise: str, name: str, subs: list[tuple[str, str]], folder: Path) -> Path:
    text = apply_edits(SOLUTIONS[exercise].read_text("utf-8"), subs, name)
    path = folder / f"{name}.py"
    path.write_text(text, "utf-8")
    return path


def failed_checks(report) -> set[str]:
    """The checks that lost points (not those left unseen, "fix X first", by an earlier stop)."""
    return {c.id for s in report.scenarios for c in s.checks if not c.passed and not c.excluded}


def failures(report) -> str:
    return "\n".join(f"{s.name}/{c.id}: {c.feedback}" for s in report.scenarios for c in s.checks if not c.passed)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the solutions, the defective variants and the alternatives once, in parallel."""
    folder = tmp_path_factory.mktemp("defective")
    jobs = [(ex, path) for ex, path in SOLUTIONS.items()]
    jobs += [(ex, make_defective(ex, name, subs, folder)) for ex, name, _, subs in DEFECTS]
    jobs += [(ex, SERVERS / name) for name, ex in ALTERNATIVES.items()]
    exercises = {name: load_exercise(name) for name in SOLUTIONS}
    pools = Pools(jobs=2, idle=8)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as coord:
            futures = {path.stem: coord.submit(grade, exercises[ex], path, seed=SEED, pools=pools) for ex, path in jobs}
            return {k: f.result() for k, f in futures.items()}
    finally:
        pools.close()


@pytest.mark.parametrize("exercise", sorted(SOLUTIONS))
def test_reference_solution_scores_full_marks(graded, exercise):
    report = graded[SOLUTIONS[exercise].stem]
    assert report.score == report.max_score == 100, failures(report)


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_correct_servers_in_other_styles_score_full_marks(graded, name):
    report = graded[Path(name).stem]
    assert report.score == report.max_score, failures(report)


@pytest.mark.parametrize("exercise,name,checks", [(e, n, c) for e, n, c, _ in DEFECTS], ids=[d[1] for d in DEFECTS])
def test_each_defect_loses_points_on_its_own_checks_only(graded, exercise, name, checks):
    report = graded[name]
    lost = failed_checks(report)
    assert lost, f"{name} lost no points"
    assert lost <= checks, f"{name} also lost points on {lost - checks}:\n{failures(report)}"


# -- broken servers --------------------------------------------------------------------------------------
def _no_process_left(marker: str) -> bool:
    """No process of this test run has ``marker`` in its command line: ours run under this pytest
    process's sandbox uids or descend from it (other test runs on the machine have their own)."""
    from mailtrace.grading.sandbox import SANDBOX_UID_BASE, SLOTS_PER_PROCESS

    block = SANDBOX_UID_BASE + (os.getpid() % 100000) * SLOTS_PER_PROCESS
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,uid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines() if len(line.split(None, 3)) == 4]
    parent = {int(pid): int(ppid) for pid, ppid, _, _ in rows}

    def ours(pid: int, uid: int) -> bool:
        if block <= uid < block + SLOTS_PER_PROCESS:
            return True
        for _ in range(64):  # bounded walk up to this process or init
            if pid == os.getpid():
                return True
            if pid not in parent or pid <= 1:
                return False
            pid = parent[pid]
        return False

    return not [args for pid, _, uid, args in rows
                if marker in args and "pytest" not in args and ours(int(pid), int(uid))]


@pytest.mark.parametrize("name,reason", [
    ("bad_crash.py", "exited (status 1) before listening"),
    ("bad_never_listens.py", "did not listen on 127.0.0.1:"),
    ("bad_wrong_port.py", "must use the --port argument"),
    ("bad_hangs.py", "never sent a greeting"),
])
def test_a_server_that_never_serves_is_reported_and_ended(name, reason, tmp_path):
    ex = load_exercise("smtp-server")
    report = grade(ex, SERVERS / name, seed=SEED, jobs=2)
    assert report.score <= ex.checks["policy.imports"].points
    texts = "\n".join(c.feedback for s in report.scenarios for c in s.checks)
    assert reason in texts or (name == "bad_hangs.py" and "no reply within" in texts), texts[:2000]
    assert _no_process_left(name)


def test_a_server_that_forks_a_daemon_is_reported_and_its_daemon_killed():
    ex = load_exercise("smtp-server")
    report = grade(ex, SERVERS / "bad_daemon.py", seed=SEED, jobs=2, scenarios=["lecture-session"])
    # sealed sandbox: the daemon ends with its parent (never listens); else: nothing left to SIGTERM
    sigterm = [c for s in report.scenarios for c in s.checks if c.id == "smtpd.sigterm"]
    assert sigterm and not sigterm[0].passed and "forks into the background" in sigterm[0].feedback, \
        sigterm[0].feedback
    assert _no_process_left("bad_daemon.py")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_a_c_server_with_a_makefile_scores_full_marks(tmp_path):
    sub = tmp_path / "c-student"
    shutil.copytree(SERVERS / "c_smtp", sub, ignore=shutil.ignore_patterns("run"))
    report = grade(load_exercise("smtp-server"), sub, seed=SEED, jobs=2)
    assert report.score == report.max_score, failures(report)


@pytest.mark.skipif(shutil.which("javac") is None, reason="javac is not installed")
def test_a_java_server_with_build_sh_scores_full_marks(tmp_path):
    sub = tmp_path / "java-student"
    shutil.copytree(SERVERS / "java_pop3", sub, ignore=shutil.ignore_patterns("run", "classes"))
    report = grade(load_exercise("pop3-server"), sub, seed=SEED, jobs=2)
    assert report.score == report.max_score, failures(report)


# -- the command line: reports, Spanish, Gradescope --------------------------------------------------------
def mailtrace(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailtrace", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


def test_cli_json_report_and_spanish_feedback(tmp_path):
    bad = make_defective("smtp-server", "open_relay", DEFECTS[1][3], tmp_path)
    out = tmp_path / "r.json"
    r = mailtrace("grade", "smtp-server", str(bad), "--scenario", "no-relay", "--format", "json", "-o", str(out),
                  "--lang", "es", "--seed", str(SEED))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text("utf-8"))
    relay = [c for s in report["scenarios"] for c in s["checks"] if c["id"] == "smtpd.no-relay"][0]
    assert not relay["passed"]
    assert "Se esperaba: una respuesta 550 a 'RCPT TO:<" in relay["feedback"]
    assert "Transcripción:" in relay["feedback"] and ">> S: 250" in relay["feedback"]
    assert "Véase RFC 5321 §3.6.2" in relay["feedback"]
    assert relay["title"].startswith("550 para")


def test_gradescope_zip_for_a_server_exercise(tmp_path):
    out = tmp_path / "ag.zip"
    r = mailtrace("gradescope", "pop3-server", "-o", str(out))
    assert r.returncode == 0, r.stderr
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("exercise/exercise.toml") for n in names)
    assert any(n.endswith("exercise/scenarios/update.toml") for n in names)


@pytest.mark.slow
def test_class_run_over_twelve_servers_with_broken_ones(tmp_path):
    """--class over 12 SMTP servers (correct ones in four styles, one-defect ones, a crash, a
    silent one, one that never listens): every student graded, the broken ones reported, all
    the files written, no process left."""
    cls = tmp_path / "class"
    cls.mkdir()
    shutil.copy(SOLUTIONS["smtp-server"], cls / "ana.py")
    shutil.copy(SERVERS / "smtp_server_asyncio.py", cls / "berta.py")
    shutil.copy(SERVERS / "smtp_server_select.py", cls / "carlos.py")
    shutil.copytree(SERVERS / "c_smtp", cls / "dolores", ignore=shutil.ignore_patterns("run"))
    smtp_defects = [d for d in DEFECTS if d[0] == "smtp-server"][:5]
    for i, (ex, name, _, subs) in enumerate(smtp_defects):
        make_defective(ex, f"student{i}", subs, cls)
    shutil.copy(SERVERS / "bad_crash.py", cls / "eva.py")
    shutil.copy(SERVERS / "bad_hangs.py", cls / "fede.py")
    shutil.copy(SERVERS / "bad_never_listens.py", cls / "gema.py")
    out = tmp_path / "out"
    r = mailtrace("grade", "smtp-server", str(cls), "--class", "--jobs", "2", "-o", str(out), "--seed", str(SEED))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "class.json").read_text("utf-8"))
    scores = {s["student"]: s["score"] for s in data["students"]}
    assert len(scores) == 12
    assert all(scores[n] == 100 for n in ("ana", "berta", "carlos", "dolores")), scores
    assert all(50 < scores[f"student{i}"] < 100 for i in range(5)), scores
    assert all(scores[n] <= 4 for n in ("eva", "fede", "gema")), scores
    assert (out / "gradebook.csv").is_file() and (out / "report.html").is_file()
    for marker in ("bad_crash", "bad_hangs", "bad_never_listens", "eva.py", "fede.py", "gema.py"):
        assert _no_process_left(marker)


@pytest.mark.parametrize("name", ["bad_stalls_after_helo.py", "bad_floods.py"])
def test_a_server_that_stops_answering_or_never_stops_earns_nothing_after_that(name):
    """A dialogue cut short (no reply after HELO; a reply that never ends) lets no check that
    found nothing wrong earn points: it saw nothing after the stop (found by an independent
    tester: 51/100 and 79.67/100 for such servers).  A flood is read up to a bound and its
    transcript kept to a bound."""
    from mailtrace.grading.grader import MAX_REPORT_EVENTS

    ex = load_exercise("smtp-server")
    report = grade(ex, SERVERS / name, seed=SEED, jobs=2, scenarios=["lecture-session", "bodies"])
    assert report.score <= ex.checks["policy.imports"].points, [(c.id, c.points) for s in report.scenarios
                                                                for c in s.checks if c.points]
    feedback = "\n".join(c.feedback for s in report.scenarios for c in s.checks)
    assert "the dialogue stopped at" in feedback
    assert all(len(s.events) <= MAX_REPORT_EVENTS for s in report.scenarios)
    assert _no_process_left(name)


def test_a_pop3_server_without_a_line_limit_may_refuse_the_long_user_at_pass(tmp_path):
    """The contract lets the -ERR for an unknown user come at USER or at PASS, and sets no POP3
    line limit: a server that takes a 100 KB USER and refuses at PASS is right (found by an
    independent tester: it lost pop3d.robust)."""
    source = (ROOT / "solutions" / "pop3-server" / "pop3_server.py").read_text()
    limit = next(line for line in source.splitlines() if line.startswith("MAX_COMMAND_LINE"))
    program = tmp_path / "pop3_server.py"
    program.write_text(source.replace(limit, "MAX_COMMAND_LINE = 10 * 1024 * 1024"))
    report = grade(load_exercise("pop3-server"), program, seed=SEED, jobs=2, scenarios=["garbage-and-long-line"])
    assert report.score == report.max_score, failures(report)


def test_the_wrong_password_the_grader_sends_is_hidden_in_what_the_server_printed(tmp_path):
    """A student's server logging its dialogue on stderr prints the passwords the grader sends,
    the wrong one of the wrong-password scenario included: all hidden unless --show-secrets
    (found by an independent tester: the wrong one reached the JSON and JUnit reports)."""
    from mailtrace.grading.report import to_json, to_junit

    source = (ROOT / "solutions" / "pop3-server" / "pop3_server.py").read_text()
    anchor = "            words = line.decode(\"utf-8\", \"replace\").split()\n"
    assert anchor in source
    program = tmp_path / "pop3_server.py"
    program.write_text(source.replace(anchor, anchor + "            print('C:', line.decode('utf-8', 'replace').strip(), "
                                                       "file=sys.stderr, flush=True)\n"))
    ex = load_exercise("pop3-server")
    hidden = grade(ex, program, seed=SEED, jobs=2, scenarios=["wrong-password"])
    shown = grade(ex, program, seed=SEED, jobs=2, scenarios=["wrong-password"], show_secrets=True)
    printed = "\n".join(s.stderr for s in shown.scenarios)
    sent = [line.split("PASS ", 1)[1] for line in printed.splitlines() if "C: PASS " in line]
    sent = [secret for secret in sent if len(secret) >= 6]  # (not a one-letter argument of a bad-syntax step)
    assert len(set(sent)) >= 2, printed[-1000:]  # the right password and the wrong one
    for secret in sent:
        assert secret not in to_json(hidden) and secret not in to_junit(hidden)
