"""Unit tests of the grader's parts: the fault layer on a real core, exercises as data, the data
generator, the policy check, feedback excerpts, report formats."""

from __future__ import annotations

import json
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailtrace.grading import data as gdata
from mailtrace.grading.checks import REGISTRY, excerpt, load_all
from mailtrace.grading.checks.common import banned_imports
from mailtrace.grading.exercise import ExerciseError, exercises_root, fill, load_exercise
from mailtrace.grading.faults import Fault, FaultLayer, Hangup, Record, ServerScript, Sleep, Write
from mailtrace.grading.report import CheckResult, Report, ScenarioResult, to_gradescope, to_json, to_junit
from mailtrace.protocols.base import Pending
from mailtrace.transcript.event import Kind, Side

EXERCISES = ["smtp-client", "pop3-client", "imap-client", "mime-compose", "smtp-server", "pop3-server"]


def smtp_layer(script: ServerScript, users=("bob",)):
    from mailtrace.grading.grader import core_factory
    from mailtrace.servers.lab import Lab

    lab = Lab(directory=Path(tempfile.mkdtemp()), users={u: "x" for u in users})
    lab.open_store()
    return FaultLayer(core_factory("smtp", lab)(), script, "smtp")


def wire(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Write))


def run_pending(layer, actions):
    """Carry out Wait actions (slow deliveries) the way the shell does."""
    from mailtrace.grading.faults import Wait

    out = []
    for a in actions:
        if isinstance(a, Wait):
            out += run_pending(layer, layer.resume(a, a.pending.job()))
        else:
            out.append(a)
    return out


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_fault_layer_overrides_reply_and_records_it(chunk):
    script = ServerScript.from_dict({"faults": [{"on": "RCPT", "match": "bob", "reply": ["451 4.7.1 try later"]}]})
    layer = smtp_layer(script)
    assert wire(layer.start()).startswith(b"220 ")
    data = b"EHLO me\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\n"
    actions = []
    for i in range(0, len(data), chunk):
        actions += layer.receive(data[i:i + chunk])
    out = wire(actions)
    assert out.endswith(b"451 4.7.1 try later\r\n")
    assert b"2.1.5" not in out  # the core's own 250 is gone from the wire...
    replies = [a.event for a in actions if isinstance(a, Record) and a.event.side is Side.SERVER]
    assert replies[-1].code == "451" and replies[-1].verb == "RCPT"  # ...and from the transcript


def test_fault_layer_keeps_the_replies_of_earlier_commands_in_one_segment():
    """Finding F2 (independent grader review): the SMTP core writes the replies to commands that came
    in one segment in one Send; a fault on the last command must replace only its own reply."""
    script = ServerScript.from_dict({"faults": [{"on": "RCPT", "match": "carol", "reply": ["550 5.1.1 no"]},
                                                {"on": "NOOP", "split": -1, "split_delay": 0.01}]})
    layer = smtp_layer(script)
    layer.start()
    layer.receive(b"EHLO me\r\n")
    out = wire(layer.receive(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@lab.test>\r\nRCPT TO:<carol@lab.test>\r\n"))
    assert out.startswith(b"250 2.1.0") and b"250 2.1.5" in out and out.endswith(b"550 5.1.1 no\r\n")
    # the timing faults of a command cut only its own reply, not the ones before it
    actions = layer.receive(b"RSET\r\nNOOP\r\n")
    writes = [a.data for a in actions if isinstance(a, Write)]
    assert writes[0].startswith(b"250") and writes[0].endswith(b"\r\n") and len(writes) == 3


def test_scripted_pop3_replies_carry_the_status_as_the_core_records_it():
    """Finding F5: a scripted "-ERR ..." line was recorded with code "" (split at the "-"), so
    the checks never saw the refusal."""
    from mailtrace.grading.faults import _code_of

    assert _code_of("-ERR [AUTH] no such mailbox", "pop3") == "-ERR"
    assert _code_of("+OK 2 messages", "pop3") == "+OK"
    assert _code_of("250-PIPELINING", "smtp") == "250"


def test_fault_layer_split_delay_silence_close():
    layer = smtp_layer(ServerScript.from_dict({"split_lines": True, "split_delay": 0.01,
                                               "faults": [{"on": "MAIL", "action": "silence"}]}))
    start = layer.start()
    writes = [a for a in start if isinstance(a, Write)]
    assert len(writes) == 2 and not writes[0].unit_end and writes[1].unit_end  # a line in two segments
    assert any(isinstance(a, Sleep) for a in start)
    # pauses between segments last the client's own time (scripted.pause_in_client_time)
    assert all(a.client_time for a in start if isinstance(a, Sleep))
    assert wire(layer.receive(b"EHLO me\r\n"))
    assert wire(layer.receive(b"MAIL FROM:<a@b.example>\r\n")) == b""
    assert wire(layer.receive(b"NOOP\r\n")) == b""  # silent from then on
    closing = smtp_layer(ServerScript.from_dict({"faults": [{"on": "EHLO", "action": "close"}]}))
    closing.start()
    assert any(isinstance(a, Hangup) for a in closing.receive(b"EHLO me\r\n"))


def test_a_greeting_delay_is_paused_in_the_clients_own_time():
    """A starved client must meet a scripted pause as the scenario meant it: a client that never
    waits for the greeting sent its EHLO before a 554 greeting on a quiet machine, after it on a
    loaded one (and lost smtp.stops-after-error besides its own smtp.waits-for-reply)."""
    layer = smtp_layer(ServerScript.from_dict({"greeting": ["554 5.3.2 no service"], "greeting_delay": 0.2,
                                               "faults": [{"on": "EHLO", "delay": 0.3}]}))
    pauses = [a for a in layer.start() if isinstance(a, Sleep)]
    assert [(p.seconds, p.client_time) for p in pauses] == [(0.2, True)]
    slow = smtp_layer(ServerScript.from_dict({"faults": [{"on": "EHLO", "delay": 0.3}]}))
    slow.start()
    # a slow server's delays stay wall-clock: stretching every reply's delay on a loaded machine
    # ran whole dialogues past their time limit (pop3 slow-server delays each of ~12 replies)
    pauses = [a for a in slow.receive(b"EHLO me\r\n") if isinstance(a, Sleep)]
    assert [(p.seconds, p.client_time) for p in pauses] == [(0.3, False)]


def test_a_pause_in_client_time_ends_by_its_bound_even_when_looking_at_the_client_is_slow():
    """On a busy grader the look at the client's /proc entries (a thread hop, each way needing
    the interpreter lock) once took longer than the pause itself; ten such looks made one cut
    RETR outlast the run.  The pause, its looks included, ends by seconds + its extension."""
    import asyncio
    import os
    import time

    from mailtrace.grading.scripted import MAX_PAUSE_EXTENSION, MAX_PAUSE_FACTOR, pause_in_client_time

    looked = []

    def slow_pids() -> list[int]:
        looked.append(1)
        time.sleep(1.5)  # a look held up far longer than the pause
        return [os.getpid()]

    async def pause() -> float:
        start = time.monotonic()
        await pause_in_client_time(0.02, slow_pids)
        return time.monotonic() - start

    took = asyncio.run(pause())
    assert looked, "the client's processes were never looked at"
    bound = 0.02 + min(MAX_PAUSE_FACTOR * 0.02, MAX_PAUSE_EXTENSION)
    assert took < bound + 0.5 < 1.5, f"a 0.02 s pause took {took:.2f} s"


def test_fault_layer_greeting_override_and_core_input():
    layer = smtp_layer(ServerScript.from_dict({
        "greeting": ["421 4.3.2 busy"], "greeting_close": True}))
    actions = layer.start()
    assert wire(actions) == b"421 4.3.2 busy\r\n" and isinstance(actions[-1], Hangup)
    layer = smtp_layer(ServerScript.from_dict({"faults": [{"on": "MAIL", "reply": ["553 no"], "core_input": "RSET"}]}))
    layer.start()
    layer.receive(b"EHLO me\r\n")
    assert wire(layer.receive(b"MAIL FROM:<a@b.example>\r\n")) == b"553 no\r\n"
    # the core forgot the MAIL the script refused: RCPT is out of sequence for it too
    assert wire(layer.receive(b"RCPT TO:<bob@lab.test>\r\n")).startswith(b"503")


def test_fault_layer_applies_fault_after_slow_delivery():
    layer = smtp_layer(ServerScript.from_dict({"faults": [{"on": ".", "reply": ["554 5.7.1 spam"]}]}))
    layer.start()
    for line in (b"EHLO me\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n"):
        layer.receive(line)
    actions = run_pending(layer, layer.receive(b"Subject: x\r\n\r\nhi\r\n.\r\n"))
    assert wire(actions) == b"554 5.7.1 spam\r\n"


def layer_for(protocol: str, lab_store_mail: bytes, script: ServerScript | None = None):
    """A fault layer on the real ``protocol`` core of a lab whose user bob has one message."""
    from mailtrace.grading.grader import core_factory
    from mailtrace.servers.lab import Lab

    lab = Lab(directory=Path(tempfile.mkdtemp()), users={"bob": "x"})
    lab.open_store().deliver("bob", lab_store_mail)
    return FaultLayer(core_factory(protocol, lab)(), script or ServerScript(), protocol)


def writes_and_waits(layer, actions):
    """The shell's Write octets, one entry per write, and how many slow jobs the reply waited for."""
    from mailtrace.grading.faults import Wait

    writes, waits = [], 0
    while actions:
        a = actions.pop(0)
        if isinstance(a, Wait):
            waits += 1
            actions = layer.resume(a, a.pending.job()) + actions
        elif isinstance(a, Write):
            writes.append(a.data)
    return writes, waits


MESSAGE = b"Subject: x\r\n\r\nhi\r\n"


def test_a_reply_spanning_two_slow_jobs_is_one_write():
    """Issue #13 (one seed, one grade): an IMAP UID STORE sends its untagged FETCH after the store
    job, then (the store told the view its mailbox changed) looks at the mailbox in a second job
    before the tagged OK.  Written as the core made it, in two writes, whether a client doing one
    recv() per command got the whole reply depended on thread and kernel timing."""
    def store_reply(script: ServerScript) -> tuple[list[bytes], int]:
        layer = layer_for("imap", MESSAGE, script)
        layer.start()
        for line in (b"a1 LOGIN bob x\r\n", b"a2 SELECT INBOX\r\n"):
            writes_and_waits(layer, layer.receive(line))
        return writes_and_waits(layer, layer.receive(b"a3 UID STORE 1 +FLAGS (\\Seen)\r\n"))

    writes, waits = store_reply(ServerScript())
    assert waits == 2  # the store job, then the look at the mailbox
    assert writes == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\na3 OK UID STORE completed\r\n"]
    # a scripted split is the script's: the first line in two, then the rest of the whole reply
    cut, _ = store_reply(ServerScript(split_lines="first", split_delay=0.0))
    assert len(cut) == 3 and b"".join(cut) == writes[0] and cut[2] == b"a3 OK UID STORE completed\r\n"


def test_pop3_retr_and_smtp_spooled_data_replies_are_one_write():
    """The same for the other cores' slow jobs: a POP3 RETR (the message read in a job) and an
    SMTP DATA body (spooled, then delivered in jobs) are answered in one write each."""
    layer = layer_for("pop3", MESSAGE)
    layer.start()
    for line in (b"USER bob\r\n", b"PASS x\r\n"):
        writes_and_waits(layer, layer.receive(line))
    writes, waits = writes_and_waits(layer, layer.receive(b"RETR 1\r\n"))
    assert waits >= 1 and len(writes) == 1, writes
    assert writes[0].startswith(b"+OK") and writes[0].endswith(b"\r\n.\r\n")
    layer = smtp_layer(ServerScript())
    layer.start()
    for line in (b"EHLO me\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<bob@lab.test>\r\n", b"DATA\r\n"):
        writes_and_waits(layer, layer.receive(line))
    writes, waits = writes_and_waits(layer, layer.receive(b"Subject: x\r\n\r\n" + b"y" * 70 + b"\r\n.\r\n"))
    assert waits >= 1 and len(writes) == 1 and writes[0].startswith(b"250 "), writes


def test_unknown_fault_fields_are_refused():
    with pytest.raises(ValueError):
        Fault.from_dict({"on": "RCPT", "reploy": ["550 x"]})
    with pytest.raises(ValueError):
        ServerScript.from_dict({"greting": ["220 x"]})


@pytest.mark.parametrize("name", EXERCISES)
def test_exercises_load_and_use_every_check(name):
    ex = load_exercise(name)
    assert ex.scenarios and ex.program
    used = {c for s in ex.scenarios for c in s.checks} | set(ex.policy_checks)
    assert used == set(ex.checks), "every check with points is used by a scenario, and vice versa"
    for s in ex.scenarios:
        assert s.description
    root = exercises_root() / name
    for f in ("README.md", "README.es.md", ex.program):
        assert (root / f).is_file(), f"{name}/{f}"


def test_silent_scenarios_leave_room_for_a_timeout_then_quit(tmp_path):
    """Finding F1: a client that times out (10 s), then sends QUIT/LOGOUT and waits as long for
    its reply must not be killed first, whatever timeout the scenario file gives."""
    from mailtrace.grading.exercise import SILENT_TIMEOUT

    assert SILENT_TIMEOUT >= 2 * 10 + 5
    for name in EXERCISES:
        for sc in load_exercise(name).scenarios:
            if any(f.get("action") == "silence" for f in sc.server.get("faults", ())):
                assert sc.timeout >= SILENT_TIMEOUT, f"{name}/{sc.name}"
    ex = tmp_path / "ex"
    (ex / "scenarios").mkdir(parents=True)
    (ex / "exercise.toml").write_text('program = "c.py"\nprotocol = "smtp"\ntimeout = 8\n'
                                      '[checks."smtp.timeout"]\npoints = 1\n')
    (ex / "scenarios" / "s.toml").write_text('[[scenario]]\nname = "s"\ntimeout = 12\nchecks = ["smtp.timeout"]\n'
                                             '[[scenario.server.faults]]\non = "MAIL"\naction = "silence"\n')
    assert load_exercise(str(ex)).scenarios[0].timeout == SILENT_TIMEOUT


def test_every_registered_check_is_used_somewhere():
    load_all()
    used = set()
    for name in EXERCISES:
        ex = load_exercise(name)
        used |= set(ex.checks)
    assert set(REGISTRY) - used == set()


def test_bad_exercise_files_give_clear_errors(tmp_path):
    (tmp_path / "exercise.toml").write_text('program = "x.py"\n[checks."smtp.crlf"]\npoints = 1\n')
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "a.toml").write_text('[[scenario]]\nname = "a"\nchecks = ["smtp.nope"]\n')
    with pytest.raises(ExerciseError, match="unknown check"):
        load_exercise(str(tmp_path))
    (tmp_path / "scenarios" / "a.toml").write_text('[[scenario]]\nname = "a"\nchecks = ["smtp.crlf"]\n'
                                                   '[[scenario.server.faults]]\non = "X"\naction = "explode"\n')
    with pytest.raises((ExerciseError, ValueError)):
        load_exercise(str(tmp_path))
    with pytest.raises(ExerciseError, match="no exercise"):
        load_exercise("no-such-exercise")


def test_data_is_reproducible_from_the_seed_and_differs_between_seeds():
    a = gdata.variables(gdata.rng_for(1, "smtp-client", "s"))
    b = gdata.variables(gdata.rng_for(1, "smtp-client", "s"))
    c = gdata.variables(gdata.rng_for(2, "smtp-client", "s"))
    assert a == b
    assert a["rcpt1"] != c["rcpt1"] and a["subject"] != c["subject"] and a["body"] != c["body"]
    assert " " in a["password_tricky"] and '"' in a["password_tricky"] and "\\" in a["password_tricky"]
    assert any(line.startswith(".") for line in a["body_dots"].splitlines())
    assert max(len(x) for x in a["body_long"].splitlines()) > 998
    for kind in ("plain", "dots", "utf8", "binary", "tagged", "big"):
        msg = gdata.message(kind, gdata.rng_for(3, "x", kind))
        assert msg.endswith(b"\r\n") and b"\n" not in msg.replace(b"\r\n", b"")
    assert b"\r\n.\r\n" in gdata.message("dots", gdata.rng_for(3, "x", "d"))


def test_fill_keeps_unknown_placeholders():
    assert fill(["{a}", {"{a}": "{tag} {b}"}], {"a": 1, "b": "x"}) == ["1", {"1": "{tag} x"}]


def test_policy_check_finds_every_import_form():
    banned = ("smtplib", "email.mime")
    assert not banned_imports({"a.py": "import smtplib\n"}, banned).passed
    assert not banned_imports({"a.py": "from smtplib import SMTP\n"}, banned).passed
    assert not banned_imports({"a.py": "from email.mime.text import MIMEText\n"}, banned).passed
    assert not banned_imports({"a.py": "from email import mime\n"}, banned).passed
    assert not banned_imports({"a.py": "x = __import__('smtplib')\n"}, banned).passed
    assert not banned_imports({"a.py": "import importlib\nimportlib.import_module('smtplib')\n"}, banned).passed
    assert banned_imports({"a.py": "import socket\nfrom email.utils import formatdate\n"}, banned).passed
    # a syntax error is not a banned library (issue #13: it capped the score for the wrong
    # reason); the report's diagnosis says "does not start" instead
    assert banned_imports({"a.py": "def f(:\n"}, banned).passed


def test_excerpt_marks_the_offending_line():
    from mailtrace.transcript.event import Event

    events = [Event(side=Side.SERVER, kind=Kind.REPLY, raw=b"220 hi\r\n", code="220"),
              Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"EHLO x\n", verb="EHLO"),
              Event(side=Side.SERVER, kind=Kind.REPLY, raw=b"250 ok\r\n", code="250")]
    text = excerpt(events, events[1])
    lines = text.splitlines()
    assert lines[1].startswith("  >> C: EHLO x") and "bare LF" in lines[1]
    assert lines[0].startswith("     S: 220")


def _report() -> Report:
    r = Report(exercise="smtp-client", submission="x.py", seed=42)
    r.scenarios.append(ScenarioResult(name="one", checks=[
        CheckResult("smtp.crlf", "Lines end in CRLF", False, 0, 3, "Expected: CRLF\n  >> C: EHLO x", "visible"),
        CheckResult("smtp.quit", "Ends with QUIT", True, 2, 2, "", "hidden")], status="exit status 0"))
    r.finish()
    return r


def test_report_formats():
    r = _report()
    d = json.loads(to_json(r))
    for key in ("exercise", "submission", "score", "max_score", "seed", "scenarios"):
        assert key in d
    assert d["score"] == 2 and d["max_score"] == 5
    check = d["scenarios"][0]["checks"][0]
    for key in ("id", "passed", "points", "max_points", "feedback"):
        assert key in check
    root = ET.fromstring(to_junit(r))
    assert root.get("tests") == "2" and root.get("failures") == "1"
    assert root.find(".//failure") is not None
    gs = json.loads(to_gradescope(r))
    assert gs["score"] == 2 and len(gs["tests"]) == 2
    assert {t["visibility"] for t in gs["tests"]} == {"visible", "hidden"}
    assert all({"name", "score", "max_score", "output"} <= set(t) for t in gs["tests"])


def test_scripted_server_stamps_how_each_command_arrived():
    """A client that sends before the reply ends is caught, on a real socket, with the real core."""
    import socket

    from waiting import wait_until

    from mailtrace.grading.grader import core_factory
    from mailtrace.grading.scripted import ScriptedServer
    from mailtrace.servers.lab import Lab
    from mailtrace.transcript.recorder import MemorySink, Recorder

    lab = Lab(directory=Path(tempfile.mkdtemp()), users={"bob": "x"})
    lab.open_store()
    recorder, sink = Recorder(), MemorySink()
    recorder.add_sink(sink)
    script = ServerScript.from_dict({"greeting_delay": 0.3, "split_lines": True, "split_delay": 0.15})
    server = ScriptedServer("smtp", core_factory("smtp", lab), script, recorder)
    port = server.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"EHLO early\r\n")  # before the greeting: before-reply
            got = b""
            while b"\r\n" not in got:  # the greeting...
                got += s.recv(100)
            rest = got.split(b"\r\n", 1)[1]
            while not rest or rest.endswith(b"\r\n"):  # ...then the EHLO reply, up to a line cut in half
                rest += s.recv(100)
            s.sendall(b"NOOP\r\n")  # ...sent while a reply line is still coming: mid-line
            wait_until(lambda: any(e.verb == "NOOP" for e in list(sink.events)), what="the NOOP recorded")
    finally:
        server.stop()
    arrived = {e.verb: e.arrived for e in sink.events if e.side is Side.CLIENT and e.kind is Kind.COMMAND}
    assert arrived["EHLO"] == "before-reply"
    assert arrived["NOOP"] in ("mid-line", "mid-reply")


@pytest.mark.parametrize("isolate,private_tmp,sealed", [(False, False, False), (True, True, False),
                                                         (True, False, False), (True, True, True)])
def test_sandbox_limits_without_and_with_isolation(tmp_path, isolate, private_tmp, sealed):
    """(True, False, False) is a root grader in a container that refuses mount namespaces (Docker);
    (True, True, True) is the bubblewrap sandbox."""
    import os

    from mailtrace.grading.sandbox import Limits, Sandbox, bwrap_works

    if isolate and not (hasattr(os, "geteuid") and os.geteuid() == 0):
        pytest.skip("isolation (uid switch, private /tmp) needs root")
    if sealed and not bwrap_works():
        pytest.skip("bubblewrap is not installed or may not create namespaces here")
    sb = Sandbox(Limits(timeout=1.5, cpu_seconds=5, output_bytes=1000), isolate=isolate, sealed=sealed)
    sb.private_tmp = sb.private_tmp and private_tmp
    wd = sb.make_workdir()
    try:
        (wd / "loop.py").write_text("import sys\nsys.stdout.write('x' * 5000)\nsys.stdout.flush()\nwhile True:\n    pass\n")
        (wd / "mem.py").write_text("x = bytearray(8 * 1024 ** 3)\n")
        (wd / "env.py").write_text("import os, sys\nprint(sorted(os.environ))\nsys.exit(7)\n")
        sb.give(wd)
        r = sb.run([sb.python(), "loop.py"], wd)
        assert r.timed_out and r.exit_code is None and len(r.stdout) == 1000 and r.truncated
        r = sb.run([sb.python(), "mem.py"], wd)
        assert r.exit_code == 1 and b"MemoryError" in r.stderr
        r = sb.run([sb.python(), "env.py"], wd)
        assert r.exit_code == 7 and b"SECRET_TOKEN" not in r.stdout
        assert any("network" in e for e in r.enforced)
        if sealed:
            assert any(e.startswith("sealed (bubblewrap)") for e in r.enforced)
        elif isolate:
            assert any(("private /tmp" in e) == private_tmp for e in r.enforced if e.startswith("uid "))
    finally:
        sb.remove_workdir(wd)


def test_spanish_titles_cover_every_check_and_feedback_labels_translate():
    from mailtrace.grading.checks import Outcome, feedback, title

    load_all()
    chk = REGISTRY["smtp.crlf"]
    assert title(chk, "es") == "Las líneas terminan en CRLF" and title(chk, "en") == chk.title
    text = feedback(Outcome(False, "CRLF", "LF"), chk, [], "es")
    assert text.startswith("Se esperaba: CRLF\nOcurrió: LF") and "Véase RFC 5321" in text


def test_a_deferring_check_takes_the_failure_when_its_owner_is_not_in_the_scenario():
    """Finding F17: pop3.message-bytes deferred to whole-reply/multiline ("not judged") in a
    scenario that applied neither, so a one-recv() RETR lost nothing."""
    from types import SimpleNamespace

    from mailtrace.grading.checks import REGISTRY, Defer, fail
    from mailtrace.grading.grader import _deferred

    REGISTRY["test.owner"] = SimpleNamespace(fn=lambda run: fail("whole lines", "a partial line"))
    try:
        run = SimpleNamespace(scenario=SimpleNamespace(checks=("test.owner", "pop3.message-bytes")))
        assert _deferred(run, Defer(("test.owner",))) is None  # the owner is there: it takes the points
        run.scenario.checks = ("pop3.message-bytes",)
        taken = _deferred(run, Defer(("test.owner",)))
        assert taken is not None and not taken.passed and taken.happened == "a partial line"
    finally:
        del REGISTRY["test.owner"]


def test_waits_for_reply_uses_the_rfc2920_group_rule():
    """RFC 2920 §3.1: NOOP (like EHLO, DATA, QUIT) must end a group; MAIL and RCPT may not.
    The grader takes the rule from the SMTP core's MUST_END_GROUP (it once let NOOP through)."""
    from types import SimpleNamespace

    from mailtrace.grading.checks.common import waits_for_reply
    from mailtrace.transcript.event import Event

    def ev(side, kind, raw, verb, code="", **kw):
        return Event(side=side, kind=kind, raw=raw, protocol="smtp", verb=verb, code=code, session="s", **kw)

    def run(first: str, then: str):
        events = [ev(Side.SERVER, Kind.REPLY, b"220 lab\r\n", "<greeting>", "220"),
                  ev(Side.CLIENT, Kind.COMMAND, b"EHLO x\r\n", "EHLO"),
                  ev(Side.SERVER, Kind.REPLY, b"250-lab\r\n250 PIPELINING\r\n", "EHLO", "250"),
                  ev(Side.CLIENT, Kind.COMMAND, first.encode() + b"\r\n", first.split()[0]),
                  ev(Side.CLIENT, Kind.COMMAND, then.encode() + b"\r\n", then.split()[0],
                     arrived="before-reply"),
                  ev(Side.CLIENT, Kind.DATA, b"Subject: x\r\n\r\nhi\r\n.\r\n", "DATA")]
        clients = [e for e in events if e.side is Side.CLIENT]
        return SimpleNamespace(events=events, client_events=lambda: clients, commands=lambda verb=None: clients,
                               scenario=SimpleNamespace(expect_exit=0, options={}))

    good = waits_for_reply(run("MAIL FROM:<a@b>", "RCPT TO:<c@d>"), "smtp")
    assert good is None or good.passed
    bad = waits_for_reply(run("NOOP", "MAIL FROM:<a@b>"), "smtp")
    assert bad is not None and not bad.passed and "before" in bad.happened


def test_a_pipelining_client_that_writes_each_line_apart_does_not_lose_stops_after_error(tmp_path):
    """RFC 2920 §3.1: with PIPELINING a client may send RCPT after MAIL without reading MAIL's
    reply.  One that writes the lines of the group apart (bash's printf, a pause between them)
    has its RCPT arrive after the 553 was sent: nothing says it had read it, so it is not
    judged a client that went on after a refusal (found by an independent tester: the same
    program scored 100 or 99.55 by timing)."""
    from mailtrace.grading.grader import grade

    source = (Path(__file__).resolve().parents[1] / "alternative" / "smtp_client_pipelining.py").read_text()
    group = '''            c.s.sendall(("MAIL FROM:<%s>\\r\\n" % a.frm).encode()
                        + b"".join(("RCPT TO:<%s>\\r\\n" % r).encode() for r in a.to))'''
    assert group in source
    apart = '''            c.s.sendall(("MAIL FROM:<%s>\\r\\n" % a.frm).encode())
            __import__("time").sleep(0.3)  # the rest of the group a moment later, still unread
            c.s.sendall(b"".join(("RCPT TO:<%s>\\r\\n" % r).encode() for r in a.to))'''
    program = tmp_path / "smtp_client.py"
    program.write_text(source.replace(group, apart))
    report = grade(load_exercise("smtp-client"), program, seed=7, scenarios=["pipelining-mail-refused"])
    checks = {c.id: c for s in report.scenarios for c in s.checks}
    assert checks["smtp.stops-after-error"].passed, checks["smtp.stops-after-error"].feedback
    assert report.score == report.max_score, [(c.id, c.feedback) for c in checks.values() if not c.passed]
