"""Checks every client exercise shares: exit status, line endings, waiting for replies, reading
whole replies, timing out, closing politely, and the import policy.

Each is registered once per protocol (``smtp.crlf``, ``pop3.crlf``, ``imap.crlf`` ...) so an
exercise's points table names checks of its own protocol.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from mailtrace.grading.checks import Defer, Outcome, check, ok, phrase, said, text
from mailtrace.protocols.smtp.spec import MUST_END_GROUP  # RFC 2920 §3.1: the core's table, not a copy
from mailtrace.transcript.event import Event, Kind, Side

PROTOCOLS = ("smtp", "pop3", "imap")
CLOSING_VERB = {"smtp": "QUIT", "pop3": "QUIT", "imap": "LOGOUT"}
# references: a citation as it is, or a ref.* key of grading.toml where it holds words
RFC_WAIT = {p: f"ref.wait.{p}" for p in PROTOCOLS}
RFC_CRLF = {"smtp": "RFC 5321 §2.3.8", "pop3": "RFC 1939 §3", "imap": "RFC 3501 §2.2"}
RFC_MULTI = {"smtp": "ref.multi.smtp", "pop3": "ref.multi.pop3", "imap": "RFC 3501 §2.2.2"}
RFC_CLOSE = {"smtp": "RFC 5321 §4.1.1.10 (QUIT)", "pop3": "ref.close.pop3", "imap": "RFC 3501 §6.1.3 (LOGOUT)"}
RFC_TIMEOUT = {"smtp": "ref.timeout.smtp", "pop3": "ref.contract", "imap": "ref.contract"}
TRACEBACK = "Traceback (most recent call last)"
#: every non-zero exit status comes with a message on stderr (the statements say so): a client
#: that exits 2 silently after a 421 greeting leaves its user guessing (issue #13)
STDERR_REQUIRED = tuple(range(1, 256))


def _timed_out(run) -> bool:
    return run.program.timed_out


# -- evidence: a check passes only when the client got far enough to show the behaviour ---------
def progressed(run, protocol: str) -> bool:
    """Did the client get through the scenario's dialogue (message sent / retrieved / fetched)?"""
    if protocol == "smtp":  # the message sent, or QUIT after the refusal that ends the dialogue
        return any(e.kind is Kind.DATA and e.side is Side.CLIENT for e in run.events) or \
            (run.scenario.expect_exit not in (None, 0) and any(
                (c.arrived or "after-reply") == "after-reply"
                and any(r.seq < c.seq and r.session == c.session and r.code[:1] in ("4", "5") and r.verb.upper()
                        in ("MAIL", "RCPT", "DATA") for r in run.events if r.side is Side.SERVER)
                for c in run.events if c.side is Side.CLIENT
                and (c.kind is Kind.CLOSE or (c.kind is Kind.COMMAND and c.verb.upper() == "QUIT"))))
    if protocol == "pop3":
        return len(run.commands("RETR")) >= len(run.fixture) and bool(run.commands())
    if protocol == "imap":
        return any("FETCH" in e.verb.upper() for e in run.commands()) or \
            (not run.fixture and bool(run.commands()))
    return True


def did_work(run) -> bool | None:
    """Did the program do any of the exercise's own work in this run?  None: the scenario leaves
    nothing to do (no server to reach), so it tells neither way.  A skeleton that stops at its
    first TODO does none: its exit status on a refused connection, or the imports it does not
    make, must not add up to a grade (the grader scores such a submission 0, ``diagnose``).

    Clients: a protocol command sent.  Servers: a command other than QUIT answered as expected
    with a positive reply (+OK, 2xx, 3xx), or a real client served.  Message writers: the output."""
    if run.exercise.role == "server":
        from mailtrace.grading.servers.runner import expect_matches

        for res in getattr(run, "steps", ()):
            step, expect = res.step, res.step.get("expect")
            options = expect if isinstance(expect, list) else [expect] if expect else []
            positive = bool(options) and all(str(o)[:1] in "+23" for o in options)
            if res.index >= 0 and positive and res.code and not step.get("closes") \
                    and str(step.get("cmd", "")).split()[:1] != ["QUIT"] and _reply_matches(res, expect_matches):
                return True
        return any(r.get("ok") for r in getattr(run, "real", ()))
    if run.exercise.protocol:
        if run.server_options.get("none"):
            return None
        return bool(run.commands())
    if run.scenario.expect_exit not in (None, 0):
        return None
    return bool(run.files.get(run.variables.get("arg_out", "")))


def _reply_matches(res, expect_matches) -> bool:
    expect = res.step["expect"]
    if int(res.step.get("replies", 1)) > 1:
        return len(res.codes) == len(expect) and all(expect_matches(e, c) for e, c in zip(expect, res.codes))
    return expect_matches(expect, res.code)


def no_progress(run, protocol: str, what: str) -> Outcome:
    """Not observed: the dialogue stopped before the behaviour ``what`` could be seen (the grader
    leaves it out of the score and points at the check that failed first)."""
    lang = getattr(run, "lang", "en")
    return Outcome(False, text(f"check.no-progress.{what}.expected", lang), text(f"feedback.no-progress.{protocol}", lang),
                   unobserved=True)


# -- exit status -----------------------------------------------------------------------------------
def exit_status(run) -> Outcome | None:
    expected = run.scenario.expect_exit
    prog = run.program
    if expected is None:
        return None
    if run.exercise.protocol and out_of_step(run):
        return stepped(run)  # it acted on part of a reply: whole-reply / multiline take the points
    if prog.timed_out:
        if any(c.endswith(".timeout") for c in run.scenario.checks):
            return None  # the timeout check already took the points for hanging
        if run.exercise.protocol == "smtp":
            from mailtrace.grading.checks.smtp import unterminated

            if unterminated(run) is not None:
                return None  # it waited for a reply to a message it never ended: smtp.body says so
        return said(run, "exit-killed", rfc="ref.contract", expected=expected,
                    seconds=f"{run.exercise_timeout:g}")
    if prog.signal is not None or prog.error:
        return said(run, "exit-signal", rfc="ref.contract", expected=expected,
                    status=prog.status_text(getattr(run, "lang", "en")))
    if TRACEBACK in run.stderr:
        last = run.stderr.strip().splitlines()[-1][:200]
        return said(run, "exit-traceback", rfc="ref.contract", expected=expected, last=last)
    if prog.exit_code != expected:
        what = run.scenario.options.get(f"description_{getattr(run, 'lang', 'en')}") or run.scenario.description \
            or run.scenario.name
        return said(run, "exit-wrong", rfc="ref.contract", expected=expected, what=what,
                    code=prog.exit_code,
                    stderr=f"; stderr: {run.stderr.strip()[:200]}" if run.stderr.strip() else "")
    from mailtrace.grading.exercise import fill

    for text in fill(list(run.scenario.options.get("stderr_mentions", [])), run.variables):
        if text.lower() not in run.stderr.lower():
            return said(run, "exit-mention", rfc="ref.contract", expected=expected, text=text,
                        stderr=repr(run.stderr.strip()[:200]))
    if expected in STDERR_REQUIRED and not run.stderr.strip():
        return said(run, "exit-silent", rfc="ref.contract", expected=expected)
    return ok()


# -- line endings ------------------------------------------------------------------------------------
def crlf(run, protocol: str) -> Outcome:
    if not run.client_events():
        return said(run, "crlf-nothing", None, RFC_CRLF[protocol])
    for e in run.client_events():
        if e.kind is Kind.LITERAL:
            continue
        raw = e.raw
        if e.kind is Kind.COMMAND and raw.endswith(b"\n") and not raw.endswith(b"\r\n"):
            return said(run, "crlf-bare-lf", e, RFC_CRLF[protocol])
        if e.kind is Kind.DATA:
            body = raw
            for i, byte in enumerate(body):
                if byte == 0x0A and (i == 0 or body[i - 1] != 0x0D):
                    return said(run, "crlf-message", e, "RFC 5322 §2.1 and RFC 5321 §2.3.8")
        if any(n.rule in ("bare-lf", "bare-cr") for n in e.notes):
            return said(run, "crlf-server-saw", e, RFC_CRLF[protocol])
    return ok()


# -- timing: waiting, whole replies, multi-line replies ----------------------------------------------
def _pipelining(run) -> bool:
    return any(e.side is Side.SERVER and e.kind is Kind.REPLY and b"PIPELINING" in e.raw.upper()
               for e in run.events)




def waits_for_reply(run, protocol: str) -> Outcome | None:
    pipelining = protocol == "smtp" and _pipelining(run)
    prev: Event | None = None
    first_in_session: dict[str, bool] = {}
    for e in run.client_events():
        how = e.arrived or "after-reply"
        if how in ("mid-line", "mid-reply"):
            break  # out of step from here on (it acted on part of a reply): whole-reply / multiline
        first = e.session not in first_in_session
        first_in_session[e.session] = True
        if how in ("before-reply", "same-segment"):
            if protocol == "imap" and not first:
                prev = e
                continue  # RFC 3501 §5.5: IMAP clients may send commands without waiting
            if pipelining and prev is not None and prev.verb.upper() not in MUST_END_GROUP and e.kind is Kind.COMMAND:
                prev = e
                continue
            if e.kind is Kind.DATA and protocol == "smtp":
                return said(run, "wait-data", e, "RFC 5321 §4.1.1.4 (DATA)")
            if first:
                return said(run, "wait-greeting", e, RFC_WAIT[protocol])
            return said(run, "wait-reply", e, RFC_WAIT[protocol],
                        pipelining=phrase(run, "check.pipelining-not-advertised")
                        if protocol == "smtp" and not pipelining else "")
        prev = e
    if protocol == "imap" and not run.commands():
        return said(run, "wait-nothing")
    if protocol != "imap" and not progressed(run, protocol):
        if out_of_step(run):
            return stepped(run)  # it got stuck on a partly read reply: whole-reply / multiline say so
        return no_progress(run, protocol, "waits")
    return ok()


def _first_anomaly(run) -> Event | None:
    """The first client event sent while a reply was still arriving (mid-line or mid-reply).

    Only the first one is judged: after it the client is out of step with the server, and what
    it sends later says nothing about how it reads replies.
    """
    return next((e for e in run.client_events() if e.arrived in ("mid-line", "mid-reply")), None)


def stepped(run) -> Defer:
    """Not judged: the client is out of step (see ``out_of_step``); whole-reply/multiline own it."""
    p = run.exercise.protocol
    return Defer((f"{p}.whole-reply",) + ((f"{p}.multiline",) if p != "imap" else ()))


def out_of_step(run) -> bool:
    """The client acted on part of a reply (see ``_first_anomaly``): what it saved afterwards is
    whole-reply's or multiline's business, not that of the checks on the saved bytes."""
    return _first_anomaly(run) is not None


def whole_reply(run, protocol: str) -> Outcome | None:
    e = _first_anomaly(run)
    if e is None and not progressed(run, protocol):
        return no_progress(run, protocol, "whole-reply")
    if e is None or e.arrived != "mid-line":
        return ok()
    # (not quoted: how much of the line the server had written when the command came, which
    # depends on timing, and one seed must give one report)
    return said(run, "whole-line", e, RFC_CRLF[protocol])


def multiline(run, protocol: str) -> Outcome | None:
    e = _first_anomaly(run)
    if e is None and not progressed(run, protocol):
        return no_progress(run, protocol, "multiline")
    if e is None or e.arrived != "mid-reply":
        return ok()
    return said(run, "multiline", e, RFC_MULTI[protocol], hint=phrase(run, f"check.multiline-hint.{protocol}"))


# -- closing -----------------------------------------------------------------------------------------
def closes_politely(run, protocol: str) -> Outcome | None:
    if _timed_out(run):
        return None  # killed by the grader: the timeout/exit checks say so
    if out_of_step(run):
        return stepped(run)  # it acted on part of a reply, and ended out of step: whole-reply / multiline
    verb = CLOSING_VERB[protocol]
    if not run.sessions():
        return said(run, "close-never", None, RFC_CLOSE[protocol], verb=verb)
    for sid in run.sessions():
        events = [e for e in run.events if e.session == sid]
        server_closed = any(e.kind is Kind.CLOSE and e.side is Side.SERVER for e in events)
        cmds = [e for e in events if e.side is Side.CLIENT and e.kind is Kind.COMMAND]
        if server_closed:
            continue
        if not any(c.verb.upper() == verb for c in cmds):
            # mark where QUIT was missing: the client's close (else its last command)
            last = next((e for e in reversed(events) if e.kind is Kind.CLOSE and e.side is Side.CLIENT),
                        cmds[-1] if cmds else None)
            return said(run, "close-missing", last, RFC_CLOSE[protocol], verb=verb)
    return ok()


def timeout(run, protocol: str) -> Outcome:
    cmds = run.commands()
    if not run.program.timed_out and (not cmds or run.reply_to(cmds[-1])):
        return said(run, "timeout-not-reached", cmds[-1] if cmds else None)
    if run.program.timed_out:
        return said(run, "timeout-hung", _last_client(run), RFC_TIMEOUT[protocol],
                    seconds=f"{run.exercise_timeout:g}")
    return ok()


def _last_client(run) -> Event | None:
    ev = run.client_events()
    return ev[-1] if ev else None


def _register(protocol: str) -> None:
    check(f"{protocol}.exit-status", "ref.contract")(exit_status)
    check(f"{protocol}.crlf", RFC_CRLF[protocol])(lambda run, p=protocol: crlf(run, p))
    check(f"{protocol}.waits-for-reply",
          RFC_WAIT[protocol])(lambda run, p=protocol: waits_for_reply(run, p))
    check(f"{protocol}.whole-reply",
          RFC_CRLF[protocol])(lambda run, p=protocol: whole_reply(run, p))
    if protocol != "imap":  # IMAP may pipeline: an early command is no proof of a misread reply
        check(f"{protocol}.multiline", RFC_MULTI[protocol])(
            lambda run, p=protocol: multiline(run, p))
    check(f"{protocol}.{CLOSING_VERB[protocol].lower()}",
          RFC_CLOSE[protocol])(lambda run, p=protocol: closes_politely(run, p))
    check(f"{protocol}.timeout",
          "ref.contract")(lambda run, p=protocol: timeout(run, p))


for _p in PROTOCOLS:
    _register(_p)
check("mime.exit-status", "ref.contract")(exit_status)


_AST_LOCK = threading.Lock()


# -- policy (static: reads the submission, not a run) ---------------------------------------------------
def banned_imports(sources: dict[str, str], banned: tuple[str, ...], lang: str = "en") -> Outcome:
    """Find ``import X`` / ``from X import`` / ``__import__("X")`` / ``importlib.import_module("X")``."""
    for name, text in sources.items():
        try:
            with _AST_LOCK:  # CPython 3.11's parser is not thread-safe (gh-106905)
                tree = ast.parse(text, filename=name)
        except SyntaxError:
            # not this check's business: the runs show the syntax error, and the report's
            # diagnosis says it first (a parse error is not a banned library: no cap)
            continue
        for node in ast.walk(tree):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                fn = node.func
                fname = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                if fname in ("__import__", "import_module"):
                    found = [node.args[0].value]
            for mod in found:
                for ban in banned:
                    if mod == ban or mod.startswith(ban + "."):
                        return said(lang, "policy-banned", banned=", ".join(banned), file=name,
                                    line=node.lineno, module=mod)
    return ok()


@check("policy.imports", static=True)
def policy_imports(sources: dict[str, str], exercise, lang: str = "en") -> Outcome:
    return banned_imports(sources, exercise.banned_imports, lang)


def read_sources(submission: Path) -> dict[str, str]:
    files = [submission] if submission.is_file() else sorted(submission.rglob("*.py"))
    out = {}
    for f in files:
        try:
            out[f.name if submission.is_file() else str(f.relative_to(submission))] = f.read_text("utf-8", "replace")
        except OSError:
            pass
    return out
