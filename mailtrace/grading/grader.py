"""The grader: run every scenario of an exercise against one submission, then score the checks.

For each scenario: draw the data from the seed, build a lab (Maildir store with the scenario's
mailbox fixture), start the scripted server (the real core behind the fault layer), give the
program a fresh working directory with its input files, run it in the sandbox, collect what it
left (transcript, exit status, output, files, the store afterwards) into a :class:`Run`, and
apply the scenario's checks.  Scenarios run in parallel (``jobs``), each in its own sandbox slot
(its own uid when running as root).
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mailtrace.grading import data as gdata
from mailtrace.grading.checks import REGISTRY, Defer, Outcome, fail, feedback, load_all, title
from mailtrace.grading.checks.common import did_work, read_sources
from mailtrace.grading.exercise import Exercise, Scenario, fill
from mailtrace.grading.faults import ServerScript
from mailtrace.grading.report import CheckResult, Report, ScenarioResult
from mailtrace.grading.run import Run, secrets_of
from mailtrace.grading.files import MiB, remove_tree
from mailtrace.grading.checks import text
from mailtrace.grading.sandbox import Limits, ProgramResult, Sandbox
from mailtrace.transcript.recorder import MemorySink, Recorder

#: the most the grader keeps of the files a program wrote (per scenario)
MAX_COLLECTED = 8 * 1024 * 1024
#: a submission folder larger than this is refused (copied once per scenario)
MAX_SUBMISSION = 5 * 1024 * 1024
REPEATABLE = ("to", "attach")


class SubmissionError(Exception):
    pass


#: what a folder may hold to be run (checked in this order; the statements say the same)
BUILD_FILES = ("build.sh", "Makefile", "makefile", "GNUmakefile")
RUN_FILE = "run"
#: copy and collect are bounded; a scenario's wall clock gets this much on top of the program's
COPY_COLLECT_SECONDS = 5.0


@dataclass
class Prepared:
    """A submission copied once into a staging folder (links refused, bounded), found and built."""

    stage: Path
    kind: str  # "python" | "run" | "build"
    program: str  # relative to the stage: the .py file, or "run"
    notes: list[str] = field(default_factory=list)
    build: ProgramResult | None = None
    build_error: str = ""

    def argv(self, sandbox: Sandbox, args: list[str]) -> list[str]:
        if self.kind == "python":
            return [sandbox.python(), self.program, *args]
        return [f"./{self.program}", *args]


def find_program(exercise: Exercise, root: Path, files: list[str] | None = None, lang: str = "en") -> tuple[str, str]:
    """(kind, program) in a staged copy: a Python file (the exercise's name, or the only .py),
    a folder with a ``Makefile`` or ``build.sh`` (built, then ``run``), or an executable ``run``."""
    if files is None:
        files = sorted(str(p.relative_to(root)) for p in root.iterdir() if p.is_file())
    top = {f for f in files if "/" not in f}
    if exercise.program in top:
        return "python", exercise.program
    for name in BUILD_FILES:
        if name in top:
            return "build", RUN_FILE
    if RUN_FILE in top:
        return "run", RUN_FILE
    nested = sorted((f for f in files if f.rsplit("/", 1)[-1] == exercise.program), key=lambda f: (f.count("/"), f))
    if nested:
        return "python", nested[0]
    py = sorted(f for f in top if f.endswith(".py"))
    if len(py) == 1:
        return "python", py[0]
    raise SubmissionError(text("submission.no-program", lang, program=exercise.program, run=RUN_FILE))


def prepare(exercise: Exercise, submission: Path, limits: Limits, slot: int = 0, lang: str = "en") -> Prepared:
    """Copy the submission once (safely), find what to run, and build it when it has a build file."""
    from mailtrace.grading.files import TreeError, copy_tree

    submission = Path(submission)
    if not os.path.lexists(submission) or submission.is_symlink():
        raise SubmissionError(text("submission.missing", lang, path=submission))
    stage = Path(tempfile.mkdtemp(prefix="mailtrace-stage-"))
    try:
        walked = copy_tree(submission, stage, lang=lang)
        if submission.is_file():
            prepared = Prepared(stage, "python", submission.name, walked.notes)
        else:
            kind, program = find_program(exercise, stage, walked.files, lang)
            prepared = Prepared(stage, kind, program, walked.notes)
            others = [f for f in (*BUILD_FILES, RUN_FILE) if f in walked.files]
            if kind == "python" and others:  # (the copied skeleton left beside a program in C...)
                prepared.notes.append(text("submission.python-chosen", lang, program=program, others=", ".join(others)))
    except TreeError as exc:
        remove_tree(stage)
        raise SubmissionError(text("submission.refused", lang, reason=exc)) from None
    except SubmissionError:
        remove_tree(stage)
        raise
    if prepared.kind == "run":
        os.chmod(stage / RUN_FILE, 0o755)
    if prepared.kind == "build":
        _build(prepared, limits, slot, lang)
    return prepared


def _build(prepared: Prepared, limits: Limits, slot: int, lang: str = "en") -> None:
    """Build in the same sandbox, with its own time limit: compiler errors become feedback."""
    stage = prepared.stage
    sandbox = Sandbox(limits=replace(limits, timeout=limits.build_timeout, cpu_seconds=int(limits.build_timeout)),
                      slot=slot, lang=lang)
    builder = ["/bin/sh", "build.sh"] if (stage / "build.sh").is_file() else ["make"]
    sandbox.give(stage)
    if sandbox.sealed:
        os.chmod(stage, 0o711)  # bwrap, root without capabilities, enters it to bind it
    with sandbox.network():
        result = sandbox.run(builder, stage)
    prepared.build = result
    if result.exit_code != 0:
        prepared.build_error = text("build.failed", lang, command=" ".join(builder),
                                    status=result.status_text(lang))
    elif not (stage / RUN_FILE).is_file() or (stage / RUN_FILE).is_symlink():
        prepared.build_error = text("build.no-run", lang, command=" ".join(builder), run=RUN_FILE)
    else:
        os.chmod(stage / RUN_FILE, 0o755)


def _arg_variables(argv: list[str], files: dict[str, bytes]) -> dict:
    out: dict = {"argv": list(argv)}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key = "arg_" + a[2:].replace("-", "_")
            if a[2:] in REPEATABLE:
                out.setdefault(key, []).append(argv[i + 1])
            else:
                out[key] = argv[i + 1]
            i += 2
        else:
            i += 1
    for opt in ("body_file", "text_file"):
        name = out.get(f"arg_{opt}")
        if name is not None and name in files:
            out[f"arg_{opt.split('_')[0]}_text" if opt == "body_file" else "arg_text_file_text"] = \
                files[name].decode("utf-8", "replace")
    out.setdefault("arg_to", [])
    out.setdefault("arg_attach", [])
    return out


def _ports(seed: int, exercise: str, scenario: str) -> tuple[int, int]:
    """(server port, a closed port) drawn from the seed: in a run's own network namespace they are
    free, and the same seed gives the same transcript (still unguessable: not a constant)."""
    import random

    rng = random.Random(f"{seed}/{exercise}/{scenario}/ports")
    listen = rng.randrange(20000, 40000)
    return listen, listen + rng.randrange(1, 1000)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Fixture:
    """The lab (store + users) of one scenario, and the mailbox content it starts with."""

    def __init__(self, exercise: Exercise, scenario: Scenario, variables: dict, rng, labdir: Path) -> None:
        from mailtrace.servers.lab import Lab

        box = fill(scenario.mailbox, variables)
        users = {}
        if exercise.protocol == "smtp":
            refused = {a.lower() for a in fill(scenario.options.get("not_users", []), variables)}
            for key in ("rcpt1", "rcpt2", "rcpt3"):
                if variables[key].lower() not in refused:  # the core itself refuses the others (550)
                    users[variables[key].split("@")[0]] = "x"
        self.user = box.get("user", variables.get("user", "student"))
        users[self.user] = box.get("password", variables.get("password", "secret"))
        self.lab = Lab(directory=labdir, users=users)
        self.store = self.lab.open_store()
        self.messages: list[dict] = []
        if not box:
            return
        folders = {"INBOX": box.get("messages", [])}
        folders.update(box.get("folders", {}))
        seen = set(box.get("seen", []))  # 1-based positions in INBOX
        for name, kinds in folders.items():
            if name != "INBOX":
                self.store.create_mailbox(self.user, name)
            if box.get("random_uids", True):  # burn a random number of UIDs so they cannot be guessed
                burn = [self.store.deliver(self.user, gdata.message("plain", rng), name) for _ in range(rng.randint(1, 6))]
                self.store.mailbox(self.user, name).expunge([m.uid for m in burn])
            for pos, kind in enumerate(kinds, 1):
                data = gdata.message(kind, rng)
                info = self.store.deliver(self.user, data, name)
                flags = set()
                if name == "INBOX" and pos in seen:
                    self.store.mailbox(self.user, name).set_flags(info.uid, {"\\Seen"})
                    flags.add("\\Seen")
                self.messages.append({"n": pos, "uid": info.uid, "mailbox": name, "kind": kind,
                                      "data": self.store.mailbox(self.user, name).read(info.uid), "flags": flags})

    def after(self, mailbox: str = "INBOX") -> dict:
        try:
            mb = self.store.mailbox(self.user, mailbox)
            mb.refresh()
            return {"messages": [{"uid": m.uid, "flags": set(m.flags)} for m in mb.messages()]}
        except Exception as exc:  # the store is not what is graded
            return {"messages": [], "error": str(exc)}


def _fast_tmp() -> str | None:
    """tmpfs for the scripted server's Maildir when there is one: its fsyncs cost nothing, and
    the store's durability is not what is graded."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def core_factory(protocol: str, lab):
    from mailtrace.servers.base import ConnectionContext
    from mailtrace.servers.lab import core_factory as lab_factory

    factory = lab_factory(protocol, lab)
    return lambda: factory(ConnectionContext(client="127.0.0.1:0", server="127.0.0.1:0", tls=False))


def run_scenario(exercise: Exercise, scenario: Scenario, prepared: Prepared, seed: int, sandbox: Sandbox) -> Run:
    """One scenario in its own network namespace (the scripted server and the program both live
    in it), under one wall clock for copying, running and collecting."""
    with sandbox.network():
        if exercise.role == "server":  # the student wrote the server: scripted clients talk to it
            from mailtrace.grading.servers.runner import run_server_scenario

            return run_server_scenario(exercise, scenario, prepared, seed, sandbox)
        return _run_scenario(exercise, scenario, prepared, seed, sandbox)


def _run_scenario(exercise: Exercise, scenario: Scenario, prepared: Prepared, seed: int, sandbox: Sandbox) -> Run:
    from mailtrace.grading.files import Bounds, TreeError, collect, copy_tree

    timeout = scenario.timeout or sandbox.limits.timeout
    deadline = time.monotonic() + timeout + COPY_COLLECT_SECONDS
    rng = gdata.rng_for(seed, exercise.name, scenario.name)
    variables = gdata.variables(rng)
    labdir = Path(tempfile.mkdtemp(prefix="mailtrace-lab-", dir=_fast_tmp()))
    workdir = sandbox.make_workdir()
    server = None
    fixture = None
    ports = _ports(seed, exercise.name, scenario.name) if sandbox.net_private else (0, 0)
    try:
        fixture = _Fixture(exercise, scenario, variables, rng, labdir)
        script_data = fill(scenario.server, variables)
        recorder = Recorder()
        sink = MemorySink()
        recorder.add_sink(sink)
        variables["host"] = "127.0.0.1"
        if exercise.protocol and not script_data.get("none"):
            script = ServerScript.from_dict(script_data)
            from mailtrace.grading.scripted import ScriptedServer

            server = ScriptedServer(exercise.protocol, core_factory(exercise.protocol, fixture.lab), script, recorder)
            variables["port"] = server.start(socket.create_server(("127.0.0.1", ports[0])))
        else:
            variables["port"] = ports[1] or _closed_port()
        try:
            own = set(copy_tree(prepared.stage, workdir, Bounds(max_bytes=64 * MiB, file_bytes=32 * MiB,
                                                                max_files=5000), deadline, lang=sandbox.lang).files)
        except TreeError as exc:
            raise SubmissionError(text("submission.too-large", sandbox.lang, reason=exc)) from None
        inputs: dict[str, bytes] = {}
        for name, template in scenario.files.items():
            inputs[name] = fill(template, variables).encode("utf-8")
        for name, var in scenario.binary_files.items():
            name = fill(name, variables)
            inputs[name] = variables[var]
        for name, content in inputs.items():
            (workdir / name).write_bytes(content)
        sandbox.give(workdir)
        argv = [str(a) for a in fill(list(scenario.args), variables)]
        variables.update(_arg_variables(argv, inputs))
        allowed = max(0.1, min(timeout, deadline - COPY_COLLECT_SECONDS / 2 - time.monotonic()))
        running = sandbox.start(prepared.argv(sandbox, argv), workdir, timeout=allowed)
        if server is not None:  # its pauses between segments last the program's own time
            server.client_pids = running.pids
        result = running.wait()
        deadline += result.cpu_wait_given  # the time it waited for a CPU was given back (sandbox)
        if server is not None:
            limit = time.monotonic() + 1.0  # let the server record the last bytes and the close
            while any(not t.done() for t in list(server.tasks)) and time.monotonic() < limit:
                time.sleep(0.005)
            server.stop()
        files, notes = collect(workdir, own | set(inputs), MAX_COLLECTED, deadline=deadline, lang=sandbox.lang)
        box = variables.get("arg_mailbox", "INBOX")
        return Run(exercise=exercise, scenario=scenario, variables=variables, program=result,
                   events=list(sink.events), files=files, inputs=inputs, fixture=fixture.messages,
                   store_after=fixture.after(box) if fixture.messages else {}, notes=notes)
    finally:
        if server is not None:
            server.stop()
        if fixture is not None:  # its lock files and poller: a class of 100 must not run out of descriptors
            fixture.store.close()
        sandbox.remove_workdir(workdir)
        shutil.rmtree(labdir, ignore_errors=True)


# -- scoring ------------------------------------------------------------------------------------------
def score_run(run: Run, weights: dict[str, float], lang: str = "en", show_secrets: bool = False) -> ScenarioResult:
    results = []
    run.lang = lang
    run.hidden = () if show_secrets else secrets_of(run.variables)  # in what the program printed
    never_connected = run.exercise.role == "client" and bool(run.exercise.protocol) and not run.server_options.get("none") and not run.sessions()
    for cid in run.scenario.checks:
        chk = REGISTRY[cid]
        conf = run.exercise.checks[cid]
        try:
            outcome = chk.fn(run)
        except Exception as exc:  # a check bug must not cost the student: report it, give the points
            outcome = None
            note = text("report.check-error", lang, error=f"{type(exc).__name__}: {exc}")
        else:
            note = ""
        max_points = weights[cid] * share(run.scenario, cid)
        if isinstance(outcome, Defer):
            outcome = _deferred(run, outcome)
        if never_connected and not note and (outcome is None or outcome.unobserved):
            # "not judged" keeps the points only when there was something to judge, and a check
            # "not seen" is not weighted out when the program never even connected: that is the defect
            outcome = fail(text("feedback.never-connected.expected", lang),
                           text("feedback.never-connected.happened", lang, status=run.program.status_text(lang)))
        if outcome is None:
            results.append(CheckResult(cid, title(chk, lang), True, max_points, max_points, note, conf.visibility,
                                       False))
            continue
        fraction = 1.0 if outcome.passed else (outcome.fraction or 0.0)
        # a failed rule narrower than its check gives the title its name ("Date in RFC 5322 format")
        shown = outcome.title if not outcome.passed and outcome.title else title(chk, lang)
        results.append(CheckResult(cid, shown, outcome.passed, max_points * fraction, max_points,
                                   feedback(outcome, chk, run.events, lang, show_secrets), conf.visibility, True,
                                   unobserved=outcome.unobserved and not outcome.passed))
    stopped = run.exercise.role == "server" and _not_earned_after_a_stop(run, results, lang, show_secrets)
    from mailtrace.transcript.text import render_text

    return ScenarioResult(name=run.scenario.name, description=describe(run.scenario, lang), checks=results,
                          status=run.program.status_text(lang), exit_code=run.program.exit_code,
                          duration=round(run.program.duration, 3),
                          stdout=run.stdout[-2000:], stderr=run.stderr[-2000:],
                          transcript=render_text(run.events, show_secrets=show_secrets, fold=False, lang=lang)[-20000:],
                          events=run.events[:MAX_REPORT_EVENTS],
                          notes=list(run.notes) + ([text("report.transcript-cut", lang, kept=MAX_REPORT_EVENTS,
                                                         total=len(run.events))]
                                                   if len(run.events) > MAX_REPORT_EVENTS else []),
                          # a server scenario skipped because the server never listened in another
                          # one never started the program: it says nothing about how the program runs
                          ran=bool(run.program.argv), stopped=stopped)


#: events of one scenario kept in a report (its pages and JSON Lines): a server flooding its client
#: made a class's transcripts 2 GB; a real dialogue has a few hundred
MAX_REPORT_EVENTS = 5000


def _not_earned_after_a_stop(run: Run, results: list[CheckResult], lang: str, show_secrets: bool) -> bool:
    """A student's server that stopped answering (or never stopped answering: a flood) cut the
    scenario's dialogue short: the checks that found nothing wrong saw nothing after that point
    either, so they earn nothing (a server that hangs after HELO scored 51/100 on checks that
    were never exercised)."""
    from mailtrace.grading.servers.runner import cut_short

    stop = cut_short(run)
    if stop is None:
        return False
    if stop.index == -1:
        step = text("feedback.server-stopped.greeting", lang)
    elif stop.step.get("cmd"):
        step = str(stop.step["cmd"]).split(" ", 1)[0]  # the command's verb (never its arguments: a password)
    else:  # a login (USER/PASS) or a message's lines
        step = text("feedback.server-stopped.login" if "login" in stop.step else "feedback.server-stopped.message", lang)
    problem = "timeout" if stop.problem.startswith("refused") else stop.problem.replace(" ", "-")
    outcome = fail(text("feedback.server-stopped.expected", lang),
                   text("feedback.server-stopped.happened", lang, step=step,
                        problem=text(f"feedback.stop-reason.{problem}", lang)))
    for result in results:  # unseen: "fix the stop first"; not earned (ScenarioResult.stopped)
        if result.passed or result.excluded:
            result.passed, result.points, result.unobserved, result.excluded = False, 0.0, True, True
            result.feedback = feedback(outcome, REGISTRY[result.id], run.events, lang, show_secrets)
    return True


def _cap(report: Report, exercise: Exercise) -> None:
    """A failed policy check (smtplib did the talking) caps the score: the behavioural checks
    then judged the library, not the student (exercise.toml ``policy_cap``)."""
    if exercise.policy_cap is None:
        return
    failed = [c.id for s in report.scenarios if s.name == "policy" for c in s.checks if not c.passed]
    cap = round(exercise.policy_cap * report.max_score, 2)
    if failed and report.score > cap:
        report.score = cap
        report.capped = text("report.capped-reason", report.lang, cap=f"{cap:g}",
                             percent=f"{exercise.policy_cap:.0%}", max=f"{report.max_score:g}",
                             checks=", ".join(failed))


def _deferred(run: Run, defer: Defer) -> Outcome | None:
    """A check that defers to others: not judged when one of them fails in this scenario; their
    failure when the scenario applies none of them (see ``checks.Defer``)."""
    failing = []
    for cid in defer.to:
        try:
            outcome = REGISTRY[cid].fn(run) if cid in REGISTRY else None
        except Exception:
            outcome = None
        if isinstance(outcome, Outcome) and not outcome.passed:
            failing.append((cid, outcome))
    if not failing or any(cid in run.scenario.checks for cid, _ in failing):
        return None
    return failing[0][1]


def share(sc: Scenario, cid: str) -> float:
    """How many shares of a check's points a scenario holds: 1, or its ``weights`` entry (a
    scenario where the mistake does the most harm: exit 0 after the message was refused)."""
    return float(sc.options.get("weights", {}).get(cid, 1))


def weights(exercise: Exercise) -> dict[str, float]:
    """A check's points are shared among the scenarios it applies to (points per share)."""
    counts: dict[str, float] = {}
    for sc in exercise.scenarios:
        for cid in sc.checks:
            counts[cid] = counts.get(cid, 0) + share(sc, cid)
    return {cid: exercise.checks[cid].points / n for cid, n in counts.items()}


#: scenarios whose timeout is at least this long mostly wait (a silent server): they run in a
#: wider pool, so they do not hold back the busy ones
IDLE_TIMEOUT = 15.0


class Pools:
    """Where scenarios run: ``jobs`` busy workers, more workers for the waiting scenarios, and
    one sandbox slot (uid) per running program."""

    def __init__(self, jobs: int, slot_base: int = 0, idle: int | None = None) -> None:
        self.jobs = max(1, jobs)
        idle = idle or self.jobs * 4
        self.busy = concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="grade")
        self.idle = concurrent.futures.ThreadPoolExecutor(max_workers=idle, thread_name_prefix="grade-idle")
        self.slots: queue.Queue = queue.Queue()
        for i in range(self.jobs + idle):
            self.slots.put(slot_base + i)

    def close(self) -> None:
        self.busy.shutdown(wait=True)
        self.idle.shutdown(wait=True)

    def cancel(self) -> None:
        """Ctrl-C: the scenarios waiting to run never start, the programs running now end (and
        their scenarios with them); ``close`` then returns at once."""
        from mailtrace.grading.sandbox import stop_all

        self.busy.shutdown(wait=False, cancel_futures=True)
        self.idle.shutdown(wait=False, cancel_futures=True)
        stop_all()


def grade(exercise: Exercise, submission: Path, *, seed: int | None = None, jobs: int = 2,
          limits: Limits | None = None, scenarios: list[str] | None = None, slot_base: int = 0,
          progress=None, pools: Pools | None = None, lang: str = "en", show_secrets: bool = False) -> Report:
    """Grade one submission.  Passwords in transcripts and feedback are redacted unless
    ``show_secrets``."""
    load_all()
    if seed is None:
        seed = int.from_bytes(os.urandom(3), "big")
    started = time.time()
    t0 = time.monotonic()
    submission = Path(submission)
    w = weights(exercise)
    report = Report(exercise=exercise.name, submission=str(submission), seed=seed, started=started,
                    show_secrets=show_secrets, lang=lang)
    chosen = [s for s in exercise.scenarios if scenarios is None or s.name in scenarios]
    own = pools is None
    pools = pools or Pools(jobs, slot_base)
    base_limits = limits or Limits(timeout=exercise.timeout)
    slot = pools.slots.get()
    try:
        prepared = prepare(exercise, submission, base_limits, slot, lang)
    except SubmissionError as exc:
        report.error = str(exc)
        report.max_score = round(sum(c.points for c in exercise.checks.values()), 4)
        if progress is not None:
            for _ in chosen:
                progress()
        if own:
            pools.close()
        return report
    finally:
        pools.slots.put(slot)
    report.notes = list(prepared.notes)
    try:
        return _grade_prepared(exercise, prepared, report, chosen, w, base_limits, pools, own, progress, lang, t0)
    finally:
        remove_tree(prepared.stage)


def _grade_prepared(exercise, prepared, report, chosen, w, base_limits, pools, own, progress, lang, t0) -> Report:
    seed = report.seed
    # policy (static) checks
    sources = read_sources(prepared.stage)
    policy = []
    for cid in exercise.policy_checks:
        chk = REGISTRY[cid]
        try:
            outcome = chk.fn(sources, exercise, lang)
        except Exception as exc:  # a check bug costs nothing and is reported
            outcome = Outcome(True, happened=text("report.check-error", lang, error=f"{type(exc).__name__}: {exc}"))
        pts = exercise.checks[cid].points
        shown = outcome.title if not outcome.passed and outcome.title else title(chk, lang)
        policy.append(CheckResult(cid, shown, outcome.passed, pts if outcome.passed else 0.0, pts,
                                  feedback(outcome, chk, [], lang), exercise.checks[cid].visibility, True))
    if policy:
        report.scenarios.append(ScenarioResult(name="policy", description=text("report.policy-description", lang),
                                               checks=policy, status=text("scenario.not-run", lang)))
    if prepared.build is not None:
        b = prepared.build
        report.scenarios.append(ScenarioResult(
            name="build", description=" ".join(b.argv), status=b.status_text(lang), exit_code=b.exit_code,
            duration=round(b.duration, 3), stdout=_tail(b.stdout), stderr=_tail(b.stderr)))
        report.enforced = b.enforced
    if prepared.build_error:
        output = _tail(prepared.build.stderr + prepared.build.stdout if prepared.build else b"", 1500)
        report.diagnosis = text("diagnosis.did-not-build", lang)
        for c in policy:  # a program that never ran did no work: nothing to earn (as diagnose says)
            if c.passed:
                c.passed, c.points, c.feedback = False, 0.0, report.diagnosis
        for sc in chosen:
            report.scenarios.append(_broken(sc, w, exercise, f"{prepared.build_error}\n{output}".rstrip(),
                                            status=text("scenario.not-run-build", lang), lang=lang))
            if progress is not None:
                progress()
        if own:
            pools.close()
        report.duration = round(time.monotonic() - t0, 3)
        report.finish()
        return report

    from mailtrace.grading.sandbox import new_group, remove_group

    group = new_group()  # one CPU quota for all the scenarios of this submission at once

    def one(sc: Scenario) -> ScenarioResult:
        slot = pools.slots.get()
        try:
            sandbox = Sandbox(limits=base_limits, slot=slot, lang=lang, group=group)
            try:
                run = run_scenario(exercise, sc, prepared, seed, sandbox)
            except Exception as exc:  # never the grader: the scenario is lost, with the reason
                return _broken(sc, w, exercise, str(exc) if isinstance(exc, SubmissionError)
                               else f"{type(exc).__name__}: {exc}", lang=lang)
            report.enforced = run.program.enforced
            result = score_run(run, w, lang, report.show_secrets)
            result.worked = did_work(run)
            return result
        finally:
            pools.slots.put(slot)
            if progress is not None:
                progress()

    try:
        futures = [(pools.idle if _mostly_waits(sc, exercise) else pools.busy).submit(one, sc) for sc in chosen]
        report.scenarios.extend(f.result() for f in futures)
    except KeyboardInterrupt:  # Ctrl-C: stop now, not after every queued scenario has run
        pools.cancel()
        raise
    finally:
        remove_group(group)
        if own:
            pools.close()
    report.duration = round(time.monotonic() - t0, 3)
    _point_to_root(report, lang)
    report.finish()
    _cap(report, exercise)
    report.diagnosis = diagnose(report, lang)
    if report.diagnosis:  # it never ran, or did nothing: an exit status that happens to match earns nothing
        for s in report.scenarios:
            for c in s.checks:
                if c.passed or c.excluded:
                    c.passed, c.points, c.judged, c.excluded = False, 0.0, True, False
                    c.feedback = report.diagnosis
        report.finish()
    return report


def _point_to_root(report: Report, lang: str) -> None:
    """A check that could not be seen (the dialogue stopped before it) is not judged: it names
    the check to fix first (the first failure that was seen, in its scenario, else anywhere in
    the report) and is weighted out of the score, so one defect does not cost its points twice.
    With no such failure anywhere, it keeps its failure (a mistake never goes unpunished)."""
    first = next((c for s in report.scenarios for c in s.checks if not c.passed and not c.unobserved), None)
    for s in report.scenarios:
        root = next((c for c in s.checks if not c.passed and not c.unobserved), first)
        if root is None:
            continue
        for c in s.checks:
            if c.unobserved:
                c.excluded, c.judged, c.points = True, False, 0.0
                c.feedback = text("feedback.not-judged", lang, check=root.id, title=root.title) + "\n" + c.feedback


def diagnose(report: Report, lang: str = "en") -> str:
    """A program that never gets going fails every check for one reason: say it first.

    A syntax error, or a crash before it did anything, in every scenario that ran; or none of
    the exercise's work done in any scenario (``checks.common.did_work``)."""
    from mailtrace.grading.checks import text

    ran = [s for s in report.scenarios if s.name not in ("policy", "build") and s.ran]
    if not ran:
        return ""
    crashed = [s for s in ran if s.exit_code not in (0, None) and not s.events
               and any(mark in s.stderr for mark in CRASH_MARKS)]
    if len(crashed) < len(ran):
        # an untouched skeleton: it may exit 2 on a refused connection and import nothing banned,
        # but it did none of the exercise's work in any scenario that asks for some
        telling = [s.worked for s in ran if s.worked is not None]
        return text("diagnosis.did-nothing", lang) if telling and not any(telling) else ""
    last = next((line for line in reversed(crashed[0].stderr.strip().splitlines()) if line.strip()), "")
    if any(m in crashed[0].stderr for m in ("SyntaxError", "IndentationError", "TabError")):
        return text("diagnosis.syntax-error", lang, error=last)
    return text("diagnosis.crash-at-start", lang, error=last, status=crashed[0].status)


#: what a crash at start leaves on stderr (Python, Node.js, Java, a C runtime)
CRASH_MARKS = ("Traceback (most recent call last)", "SyntaxError", "Exception in thread", "Error: ",
               "Segmentation fault", "error while loading shared libraries")


def _mostly_waits(sc: Scenario, exercise: Exercise) -> bool:
    """A silent server, delays or split replies: the scenario mostly sleeps, it needs no CPU."""
    if (sc.timeout or exercise.timeout) >= IDLE_TIMEOUT:
        return True
    srv = sc.server
    if srv.get("greeting_delay") or srv.get("split_lines") or srv.get("split_all"):
        return True
    return any(f.get("delay") or f.get("split") or f.get("action") == "silence" for f in srv.get("faults", ()))


def describe(sc: Scenario, lang: str) -> str:
    """The scenario's description in ``lang`` (``description_es`` in its TOML), else English."""
    return sc.options.get(f"description_{lang}") or sc.description


def _broken(sc: Scenario, w: dict[str, float], exercise: Exercise, error: str, status: str = "",
            lang: str = "en") -> ScenarioResult:
    checks = [CheckResult(cid, title(REGISTRY[cid], lang), False, 0.0, w[cid] * share(sc, cid),
                          text("scenario.could-not-run", lang, error=error),
                          exercise.checks[cid].visibility, True) for cid in sc.checks]
    return ScenarioResult(name=sc.name, description=describe(sc, lang), checks=checks,
                          status=status or text("scenario.error", lang, error=error), ran=False)


def _tail(data: bytes, limit: int = 2000) -> str:
    return data.decode("utf-8", "replace")[-limit:]
