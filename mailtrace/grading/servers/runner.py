"""One scenario of a server exercise: start the student's server, play the scripted clients,
stop it, look at its Maildir.  The result is a :class:`ServerRun`, the input of the checks.

Scenario data (``exercises/<name>/scenarios/*.toml``, see exercises/README.md)::

    [[scenario]]
    name = "..."
    checks = ["smtpd.replies", ...]
    step_check = "smtpd.replies"      # the check a step's reply belongs to unless it says `check`
    mailbox = {messages = ["plain", "dots", "lf"], deleted_after = [2]}   # POP3 fixture
    [[scenario.session]]
    copies = 1                        # > 1: that many clients at once (concurrency)
    keep_open = false                 # still open when the server gets SIGTERM
    real = ""                         # "smtplib" / "poplib": a real client instead of steps
    steps = [{cmd = "HELO x", expect = "250"}, {message = "dots", to = ["rcpt1"], expect = "250"}]

A step sends ``cmd`` (CRLF added), ``raw`` (as is, ``repeat`` times) or ``message`` (a generated
message, dot-stuffed, ended by CRLF.CRLF; ``partial = true``: half of it, then the client
disconnects); ``login = "ok" | "fail"`` logs in to POP3.  ``expect`` is a reply code, class
("2", "5"), "+OK"/"-ERR", or a list of them; ``close = true`` closes the connection;
``closes = true`` expects the server to close it (after QUIT).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailtrace.grading import data as gdata
from mailtrace.grading.exercise import Exercise, Scenario, fill
from mailtrace.grading.run import Run
from mailtrace.grading.checks import text
from mailtrace.grading.sandbox import ProgramResult, Sandbox
from mailtrace.grading.servers import launch
from mailtrace.grading.servers.clients import BIG_REPLY_TIMEOUT, REPLY_TIMEOUT, Client, StepResult
from mailtrace.grading.servers.watch import MaildirWatch
from mailtrace.protocols.pop3.spec import byte_stuff
from mailtrace.transcript.recorder import MemorySink, Recorder

MEGA_LINES = 13000  # lines of the "mega" message: about 1 MB

#: submissions whose server never listened, by (path, seed): the other scenarios of the same
#: grading report that at once instead of waiting 10 s each (a class run never stalls on one)
_NEVER_LISTENED: dict[tuple[str, int], str] = {}
_never_lock = threading.Lock()


@dataclass
class ServerRun(Run):
    """A :class:`Run` of a server exercise: what the scripted clients saw and the Maildir after."""

    start_error: str = ""  # the server never listened (why)
    steps: list[StepResult] = field(default_factory=list)
    expected: dict[str, list[bytes]] = field(default_factory=dict)  # user -> messages that must be there
    aborted: dict[str, list[bytes]] = field(default_factory=dict)  # user -> messages that must NOT be there
    refused: dict[str, list[bytes]] = field(default_factory=dict)  # user -> sent, but not acknowledged with 250
    maildir_after: dict[str, dict[str, bytes]] = field(default_factory=dict)  # user -> {"new/name": bytes}
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)  # inotify: (dir, name, how)
    watched: bool = False
    stopped: launch.Stopped | None = None
    concurrency: list[dict[str, Any]] = field(default_factory=list)  # per copies-session: greeted, total
    real: list[dict[str, Any]] = field(default_factory=list)  # real clients: name, ok, detail
    pop3_fixture: list[dict[str, Any]] = field(default_factory=list)  # n, path, wire (CRLF form), uid
    kept_closed: list[bool] = field(default_factory=list)  # keep_open clients: closed by the server's exit


# -- messages ---------------------------------------------------------------------------------------
def make_message(kind: str, rng: random.Random) -> bytes:
    """A message in wire form (CRLF): grading/data.py's kinds plus long, mega, lf, nofinal."""
    if kind == "long":  # a 998-octet line: the longest text line allowed (RFC 5321 §4.5.3.1.6)
        base = gdata.message("plain", rng)
        return base + ("x" * 998).encode() + b"\r\n"
    if kind == "mega":  # about 1 MB
        head = gdata.message("plain", rng)
        return head + b"".join(b"%06d %s\r\n" % (i, b"0123456789abcdef" * 4) for i in range(MEGA_LINES))
    if kind == "lf":  # stored with LF line ends (a POP3 server sends CRLF)
        return gdata.message("dots", rng).replace(b"\r\n", b"\n")
    if kind == "nofinal":  # no final line break
        return gdata.message("plain", rng).rstrip(b"\r\n")
    return gdata.message(kind, rng)


def crlf_form(stored: bytes) -> bytes:
    """What a POP3 server sends and counts for a stored message (contract: CRLF, final CRLF)."""
    data = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def expect_matches(expect: Any, code: str) -> bool:
    if expect in (None, ""):
        return True
    options = expect if isinstance(expect, list) else [expect]
    return any(code == o or (len(o) == 1 and o.isdigit() and code.startswith(o)) for o in options)


# -- fixtures ---------------------------------------------------------------------------------------
def _mailbox(root: Path, user: str) -> Path:
    box = root / user
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def _pop3_fixture(run_fixture: list, root: Path, user: str, kinds: list[str], rng: random.Random) -> None:
    box = _mailbox(root, user)
    stamp = 1700000000 + rng.randint(0, 10000000)
    for n, kind in enumerate(kinds, 1):
        stored = make_message(kind, rng)
        uid = f"{stamp + n}.M{rng.randint(100000, 999999)}P{rng.randint(100, 9999)}.lab"
        # alternate new/ and cur/: numbering is by name across both (the contract)
        name, sub = (uid, "new") if n % 2 else (uid + ":2,S", "cur")
        (box / sub / name).write_bytes(stored)
        run_fixture.append({"n": n, "path": f"{sub}/{name}", "wire": crlf_form(stored), "uid": uid, "kind": kind})


def _snapshot(root: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for box in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {}
        for sub in ("tmp", "new", "cur"):
            d = box / sub
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    if f.is_file() and not f.is_symlink():
                        files[f"{sub}/{f.name}"] = f.read_bytes()[: 4 * 1024 * 1024]
        out[box.name] = files
    return out


# -- the scenario -----------------------------------------------------------------------------------
def run_server_scenario(exercise: Exercise, scenario: Scenario, prepared, seed: int,
                        sandbox: Sandbox) -> ServerRun:
    """Called by ``grader.run_scenario`` inside ``sandbox.network()``: the server and the
    scripted clients share the run's private network namespace."""
    from mailtrace.grading.files import Bounds, TreeError, copy_tree
    from mailtrace.grading.grader import SubmissionError

    rng = gdata.rng_for(seed, exercise.name, scenario.name)
    variables = gdata.variables(rng)
    for key in ("rcpt1", "rcpt2", "rcpt3"):
        variables[key + "_user"] = variables[key].split("@")[0].lower()
    variables["domain"] = gdata.DOMAIN
    workdir = sandbox.make_workdir()
    recorder = Recorder()
    sink = MemorySink()
    recorder.add_sink(sink)
    run = ServerRun(exercise=exercise, scenario=scenario, variables=variables,
                    program=ProgramResult(argv=[], exit_code=None))
    server = None
    timeout = scenario.timeout or sandbox.limits.timeout
    try:
        try:
            copy_tree(prepared.stage, workdir, Bounds(max_bytes=64 * 1024 * 1024, file_bytes=32 * 1024 * 1024,
                                                      max_files=5000), time.monotonic() + 10)
        except TreeError as exc:
            raise SubmissionError(text("submission.too-large", sandbox.lang, reason=exc)) from None
        maildir = workdir / "maildir"
        maildir.mkdir()
        protocol = exercise.protocol
        box = fill(scenario.mailbox, variables)
        if protocol == "smtp":  # rcpt1 and rcpt2 exist; rcpt3 does not (550)
            users = [variables["rcpt1_user"], variables["rcpt2_user"]]
            for u in users:
                _mailbox(maildir, u)
            args = ["--maildir", "maildir"]
        else:
            users = [variables["user"]]
            _pop3_fixture(run.pop3_fixture, maildir, variables["user"], box.get("messages", []), rng)
            variables["other_user"] = "other" + variables["user"]
            variables["other_password"] = variables["password"][::-1]
            _mailbox(maildir, variables["other_user"])
            (workdir / "users.txt").write_text(f"{variables['user']}:{variables['password']}\n"
                                               f"{variables['other_user']}:{variables['other_password']}\n")
            args = ["--maildir", "maildir", "--users", "users.txt"]
        sandbox.give(workdir)
        port = launch.free_port()
        variables["port"] = port
        argv = prepared.argv(sandbox, ["--port", str(port), *args, *fill(list(scenario.args), variables)])
        key = (str(prepared.stage), seed)
        with _never_lock:
            known = _NEVER_LISTENED.get(key)
        if known:
            run.start_error = known + text("server.start-seen-before", sandbox.lang)
            return _finish(run, sink, None)
        watch = MaildirWatch([str(maildir / u / "new") for u in users]) if protocol == "smtp" else None
        server = launch.ServerProcess(sandbox, argv, workdir, port, timeout)
        run.start_error = server.wait_listening()
        if run.start_error:
            with _never_lock:
                _NEVER_LISTENED[key] = run.start_error
        kept = [] if run.start_error else _play(run, scenario, protocol, port, recorder, variables, rng)
        greetings = [s for s in run.steps if s.index == -1]
        if greetings and not any(s.code for s in greetings):  # listens, never greets: the same for all
            with _never_lock:
                _NEVER_LISTENED[key] = text("server.start-no-greeting", sandbox.lang, timeout=5)
        run.stopped = server.stop()
        # the server must close the connections still open when it stops (the contract)
        run.kept_closed = [c.wait_closed(0.5) for c in kept]
        for c in kept:
            c.close()
        if watch is not None:
            run.deliveries = watch.stop()
            run.watched = watch.available
        run.maildir_after = _snapshot(maildir)
        return _finish(run, sink, run.stopped.result)
    finally:
        if server is not None:
            server.kill()
        sandbox.remove_workdir(workdir)


def _finish(run: ServerRun, sink: MemorySink, result: ProgramResult | None) -> ServerRun:
    run.events = list(sink.events)
    if result is not None:
        run.program = result
    return run


def _play(run: ServerRun, scenario: Scenario, protocol: str, port: int, recorder: Recorder,
          variables: dict, rng: random.Random) -> list[Client]:
    """Run the scenario's sessions in order (a session with copies > 1: its clients at once).
    Returns the clients of ``keep_open`` sessions: still connected when the server gets SIGTERM."""
    kept: list[Client] = []
    lock = threading.Lock()
    for number, session in enumerate(scenario.options.get("session", []), 1):
        session = fill(session, variables)
        if session.get("real"):
            run.real.append(_real_client(session["real"], run, port, variables))
            continue
        copies = int(session.get("copies", 1))
        clients: list[Client] = []
        for i in range(copies):
            try:
                clients.append(Client(protocol, port, recorder, f"{number}.{i + 1}"))
            except OSError as exc:
                run.steps.append(StepResult(session="", index=-1, step={"greeting": True}, problem=f"refused: {exc}"))
        # every greeting must come while all the clients are connected: none waits for another
        greeted = _in_threads(clients, lambda c: _greeting(c, run, lock))
        if copies > 1:
            run.concurrency.append({"greeted": sum(greeted), "total": copies})
        if not any(greeted):  # a server that never greets: its steps would each wait in vain
            steps = [{**s, "skip": True} for s in session.get("steps", [])]
        else:
            steps = session.get("steps", [])
        _in_threads(clients, lambda c: _steps(c, steps, run, variables, rng, lock))
        for c in clients:
            if session.get("keep_open"):
                kept.append(c)
            else:
                c.close()
    return kept


def _in_threads(clients: list[Client], fn) -> list:
    if len(clients) == 1:
        return [fn(clients[0])]
    results: list = [None] * len(clients)

    def one(i: int) -> None:
        results[i] = fn(clients[i])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REPLY_TIMEOUT * 20)
    return results


def _greeting(client: Client, run: ServerRun, lock: threading.Lock) -> bool:
    events, problem = client.read_reply()
    res = StepResult(session=client.session.id, index=-1, step={"greeting": True}, replies=events,
                     code=_code(events), problem=problem, sent=None)
    with lock:
        run.steps.append(res)
    return not problem


def _code(events) -> str:
    from mailtrace.transcript.event import Kind

    lines = [e for e in events if e.kind is Kind.REPLY]
    return lines[-1].code if lines else ""


def _steps(client: Client, steps: list[dict], run: ServerRun, variables: dict, rng: random.Random,
           lock: threading.Lock) -> None:
    broken = False
    for index, step in enumerate(steps):
        if broken or step.get("skip"):  # the connection is gone or the server stopped answering
            res = StepResult(session=client.session.id, index=index, step=step, problem="not played")
            with lock:
                run.steps.append(res)
            continue
        res = _step(client, index, step, run, rng, lock)
        with lock:
            run.steps.append(res)
        broken = res.problem in ("timeout", "closed", "too long") and not step.get("closes")


def _step(client: Client, index: int, step: dict, run: ServerRun, rng: random.Random,
          lock: threading.Lock) -> StepResult:
    res = StepResult(session=client.session.id, index=index, step=step)
    if step.get("close"):
        client.close()
        res.problem = "closed"
        return res
    timeout = REPLY_TIMEOUT
    if "login" in step:
        return _login(client, res, step, run.variables)
    if "message" in step:
        message = make_message(step["message"], rng)
        wire = byte_stuff(message)
        if step.get("partial"):
            client.send(wire[: len(wire) // 2])
            client.take()
            client.close()
            with lock:
                for user in step.get("to", []):
                    run.aborted.setdefault(run.variables[user + "_user"], []).append(message)
            res.problem = "closed"
            return res
        client.send(wire)
        timeout = BIG_REPLY_TIMEOUT
    elif "cmd" in step:
        client.send(step["cmd"].encode("utf-8") + b"\r\n")
    elif "raw" in step:
        client.send(step["raw"].encode("utf-8") * int(step.get("repeat", 1)))
    if step.get("verify") in ("retr", "top"):
        timeout = BIG_REPLY_TIMEOUT
    sent = [e for e in client.take() if e.side.value == "C"]
    res.sent = sent[-1] if sent else None
    if step.get("expect") is None and not step.get("closes"):
        return res
    if step.get("expect") is not None:
        for _ in range(int(step.get("replies", 1))):  # pipelined commands: one reply each, in order
            events, res.problem = client.read_reply(timeout)
            res.replies += events
            res.code = _code(events)
            res.codes.append(res.code)
            if res.problem:
                break
        if res.sent is None:  # the observer held the client's bytes (e.g. after DATA): take them now
            sent = [e for e in client.take() if e.side.value == "C"]
            res.sent = sent[-1] if sent else None
    if "message" in step:  # accepted with 250: it must be in each recipient's Maildir (RFC 5321 §6.1)
        with lock:
            target = run.expected if res.code == "250" else run.refused
            for user in step.get("to", []):
                target.setdefault(run.variables[user + "_user"], []).append(message)
    if step.get("closes"):
        res.closed = client.wait_closed()
    return res


def _login(client: Client, res: StepResult, step: dict, variables: dict) -> StepResult:
    """USER then PASS.  "fail": a -ERR at USER or at PASS (the contract allows both)."""
    user = step.get("user", variables["user"])
    password = step.get("password", variables["password"])
    if password != variables["password"]:  # a wrong one on purpose: hidden in reports all the same
        variables["password_sent_wrong"] = password
    client.send(f"USER {user}\r\n".encode())
    events, problem = client.read_reply()
    res.sent = next((e for e in reversed(client.take()) if e.side.value == "C"), None)
    res.replies, res.problem, res.code = events, problem, _code(events)
    if problem or (res.code == "-ERR" and step["login"] == "fail"):
        return res
    client.send(f"PASS {password}\r\n".encode())
    events, problem = client.read_reply()
    res.sent = next((e for e in reversed(client.take()) if e.side.value == "C"), res.sent)
    res.replies, res.problem, res.code = events, problem, _code(events)
    return res


# -- real clients -----------------------------------------------------------------------------------
REAL_TIMEOUT = 30.0  # seconds a real mail program may take


def _real_program(name: str, run: ServerRun, port: int, variables: dict) -> dict[str, Any]:
    """swaks (SMTP) or curl (POP3) against the server, when installed (else not judged)."""
    import shutil
    import subprocess

    tool = shutil.which(name)
    if tool is None:
        return {"name": name, "ok": True, "skipped": f"{name} is not installed"}
    if name == "swaks":
        subject = f"swaks {variables['nonce']}"
        argv = [tool, "--server", "127.0.0.1", "--port", str(port), "--from", variables["sender"],
                "--to", variables["rcpt1"], "--header", f"Subject: {subject}", "--body", variables["body_dots"],
                "--timeout", "10", "--silent", "2"]
    else:  # curl retrieves message 1 over POP3 (RETR; curl removes the byte-stuffing)
        subject = ""
        argv = [tool, "--silent", "--show-error", "--max-time", "20",
                "--user", f"{variables['user']}:{variables['password']}", f"pop3://127.0.0.1:{port}/1"]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=REAL_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"name": name, "ok": False, "detail": finding("real_timeout", name=name, timeout=REAL_TIMEOUT)}
    err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
    if proc.returncode != 0:
        return {"name": name, "ok": False, "detail": finding("real_exit", name=name, code=proc.returncode, stderr=err)}
    if name == "swaks":  # its message must arrive: checked in the Maildir after the stop
        return {"name": name, "ok": True, "user": variables["rcpt1_user"], "subject": subject}
    want = run.pop3_fixture[0]["wire"] if run.pop3_fixture else b""
    ok = proc.stdout == want
    return {"name": name, "ok": ok,
            "detail": "" if ok else finding("real_curl", got=len(proc.stdout), want=len(want))}

def finding(key: str, **fields) -> tuple[str, dict]:
    """What a real client found, as a ``server.<key>`` message of grading.toml and its fields (the
    check words it in the report's language)."""
    return key, fields


def _real_client(name: str, run: ServerRun, port: int, variables: dict) -> dict[str, Any]:
    """A mail program not written here talks to the server (python's smtplib / poplib)."""
    try:
        if name == "smtplib":
            import smtplib
            from email.message import EmailMessage

            msg = EmailMessage()
            msg["From"] = variables["sender"]
            msg["To"] = variables["rcpt1"]
            msg["Subject"] = variables["subject"]
            msg.set_content(variables["body_dots"])
            with smtplib.SMTP("127.0.0.1", port, timeout=REPLY_TIMEOUT) as s:
                refused = s.send_message(msg, to_addrs=[variables["rcpt1"], variables["rcpt2"]])
            wire = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
            for user in ("rcpt1", "rcpt2"):
                run.expected.setdefault(variables[user + "_user"], []).append(wire)
            return {"name": name, "ok": not refused, "detail": finding("real_refused", refused=refused) if refused else ""}
        if name == "poplib":
            import poplib

            box = poplib.POP3("127.0.0.1", port, timeout=REPLY_TIMEOUT)
            try:
                box.user(variables["user"])
                box.pass_(variables["password"])
                count, _size = box.stat()
                got = [b"\r\n".join(box.retr(n)[1]) + b"\r\n" for n in range(1, count + 1)]
            finally:
                box.quit()
            want = [m["wire"] for m in run.pop3_fixture]
            ok = got == want
            return {"name": name, "ok": ok,
                    "detail": "" if ok else finding("real_poplib", got=len(got),
                                                            differ=sum(a != b for a, b in zip(got, want)))}
        if name in ("swaks", "curl"):
            return _real_program(name, run, port, variables)
        raise ValueError(f"unknown real client {name} in the scenario")  # an exercise's mistake, not the student's
    except Exception as exc:  # whatever the library raises is the finding
        return {"name": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def cut_short(run: ServerRun) -> StepResult | None:
    """The first step whose reply never came whole (no greeting, a reply that never came or never
    ended, a connection the server dropped unasked): the rest of that dialogue was not played, so
    a check finding nothing wrong in it has seen nothing either."""
    # (clients left ungreeted while others were served: a concurrency scenario's own finding)
    greeted = any(res.index == -1 and not res.problem for res in run.steps)
    for res in run.steps:
        if res.index == -1:
            if res.problem and not greeted:
                return res
            continue
        if res.problem in ("timeout", "too long"):
            return res
        if res.problem == "closed" and not any(res.step.get(k) for k in ("close", "partial", "closes", "may_close")):
            return res
    return None
