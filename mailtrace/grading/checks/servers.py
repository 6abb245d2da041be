"""Server checks (exercises smtp-server, pop3-server): the student wrote the server, the grader's
scripted clients (``grading/servers``) talked to it.  Each check is a pure function of a
``ServerRun``; its texts (English and Spanish) are data in ``knowledge/messages/grading.toml``
(``server.*``).

Most checks judge the replies to the steps that name them (a step's ``check``, else the
scenario's ``step_check``): the first step whose reply is not the one expected fails the check,
quoting that transcript line.  The others look at what the server left: the Maildir (delivery
through tmp/, unstuffing, an abandoned message), the maildrop after the session (UPDATE only on
QUIT), its stderr and how it ended on SIGTERM.  Reply syntax is the observers' judgement (the
same ``SmtpObserver`` / ``Pop3Observer`` that judge real servers in the proxy).
"""

from __future__ import annotations

import re

from mailtrace.grading.checks import Defer, Outcome, check, fail, ok, text
from mailtrace.protocols.pop3.spec import MAX_UIDL_LENGTH, byte_stuff, top_of
from mailtrace.protocols.smtp.data import unstuff
from mailtrace.protocols.smtp.syntax import continues
from mailtrace.transcript.event import Kind, Side

GREETING_CHECK = {"smtp": "smtpd.greeting", "pop3": "pop3d.greeting"}
TRACE_HEADERS = (b"return-path:", b"received:", b"delivered-to:", b"x-original-to:")


def say(run, key: str, **values) -> str:
    """A feedback text of these checks in the run's language (grading.toml, ``server.*``)."""
    return text(f"server.{key}", getattr(run, "lang", "en"), **values)


def _started(run) -> Outcome | None:
    """A server that never listened (or never greeted anyone) fails every check, with the reason."""
    if getattr(run, "start_error", ""):
        return fail(say(run, "start_expected", port=run.variables.get("port", "PORT")), run.start_error)
    greetings = [s for s in run.steps if s.index == -1]
    if greetings and not any(s.code for s in greetings):
        first = greetings[0]
        proto = run.exercise.protocol
        return fail(say(run, "greeting_expected", expect="220" if proto == "smtp" else "+OK",
                        domain=run.variables.get("domain", "")),
                    say(run, "reply_none", timeout=5.0) if first.problem == "timeout" else say(run, "reply_closed"))
    return None


def _unacknowledged(run) -> Defer | None:
    """Messages were sent but not acknowledged with 250: whatever the Maildir holds says little.
    The step's own check owns that (delivery is judged only when it passes)."""
    owners = tuple(sorted({_step_check(run, r) for r in run.steps if "message" in r.step
                           and not r.step.get("partial") and r.code != "250"}))
    return Defer(owners) if owners else None


def _line(e) -> str:
    return repr(e.text(True)) if e is not None else "(-)"


# -- the replies to the steps --------------------------------------------------------------------------
def _step_check(run, res) -> str:
    if res.index < 0:
        return GREETING_CHECK[run.exercise.protocol]
    return res.step.get("check") or run.scenario.options.get("step_check", "")


def _expect_ok(res, expect) -> bool:
    from mailtrace.grading.servers.runner import expect_matches

    if int(res.step.get("replies", 1)) > 1:  # pipelined: one expected code per reply, in order
        return len(res.codes) == len(expect) and all(expect_matches(e, c) for e, c in zip(expect, res.codes))
    return expect_matches(expect, res.code)


def judge_steps(run, cid: str) -> Outcome | Defer:
    """The first step of check ``cid`` whose reply is not the expected one fails it."""
    first = _started(run)
    if first:
        return first
    smtp = run.exercise.protocol == "smtp"
    cut = _cut_by_a_dot(run)
    for res in run.steps:
        step = res.step
        if _step_check(run, res) != cid or res.problem == "not played" or step.get("close") or step.get("partial"):
            continue
        if cut and _after_cut(run, cut, res.sent):
            return Defer((STUFFING_CHECK,))  # the client read the rest of a message as replies
        rfc = step.get(f"rfc_{getattr(run, 'lang', 'en')}") or step.get("rfc", "")  # the step's note (rfc_es)
        if step.get("greeting"):
            expect = "220" if smtp else "+OK"
            exp = say(run, "greeting_expected", expect=expect, domain=run.variables.get("domain", ""))
        else:
            expect = step.get("expect")
            shown = (" or ".join(expect) if not step.get("replies") else ", ".join(expect)) \
                if isinstance(expect, list) else expect
            exp = say(run, "reply_expected", expect=shown, command=_line(res.sent))
        if expect is not None:
            if res.problem == "timeout" and not res.code:
                return fail(exp, say(run, "reply_none", timeout=5.0), res.sent, rfc)
            if res.problem == "closed" and not res.code:
                if step.get("may_close"):
                    continue
                return fail(exp, say(run, "reply_closed"), res.sent, rfc)
            if not _expect_ok(res, expect):
                return fail(exp, say(run, "reply_got", got=_line(res.last_reply)), res.last_reply or res.sent, rfc)
        if step.get("greeting") and smtp:
            first_line = next((e.text(True) for e in res.replies if e.kind is Kind.REPLY), "")
            domain = run.variables.get("domain", "")
            if domain and domain.lower() not in first_line.lower():
                return fail(exp, say(run, "greeting_domain", got=repr(first_line), domain=domain), res.last_reply)
        if step.get("closes") and res.closed is False:
            return fail(say(run, "closes_expected"), say(run, "not_closed", timeout=2.0), res.last_reply,
                        "RFC 5321 §4.1.1.10" if smtp else "RFC 1939 §6")
    return ok()


def _reply_check(cid: str, rfc: str):
    @check(cid, rfc)
    def fn(run) -> Outcome:
        return judge_steps(run, cid)

    return fn


for _cid, _rfc in [
    ("smtpd.greeting", "RFC 5321 §4.2, §3.1"),
    ("smtpd.replies", "RFC 5321 §4.1.1, §4.3.2"),
    ("smtpd.pipelining", "RFC 2920 §3"),
    ("smtpd.sequence", "RFC 5321 §4.1.4, §3.3"),
    ("smtpd.syntax", "RFC 5321 §4.2.4, §4.3.2, §2.4"),
    ("smtpd.no-relay", "RFC 5321 §3.6.2, §3.3"),
    ("smtpd.quit", "RFC 5321 §4.1.1.10"),
    ("smtpd.long-line", "RFC 5321 §4.5.3.1.4"),
    ("smtpd.robust", "RFC 5321 §4.5.3.1.4"),
    ("pop3d.greeting", "RFC 1939 §4"),
    ("pop3d.commands", "RFC 1939 §4-§6"),
    ("pop3d.auth", "RFC 1939 §7 (USER, PASS)"),
    ("pop3d.state", "RFC 1939 §3"),
    ("pop3d.bad-number", "RFC 1939 §5"),
    ("pop3d.lock", "RFC 1939 §4, §8"),
    ("pop3d.rset", "RFC 1939 §5 (RSET)"),
    ("pop3d.robust", "RFC 1939 §3"),
]:
    _reply_check(_cid, _rfc)


# -- reply syntax: the observers' notes -----------------------------------------------------------------
SYNTAX_RULES = {"bad-reply", "bad-status", "bare-lf", "bare-cr", "response-too-long"}


@check("smtpd.reply-syntax",
       "RFC 5321 §4.2, §4.2.1")
def smtp_reply_syntax(run) -> Outcome:
    return _reply_syntax(run, "smtp_rule")


@check("pop3d.reply-syntax", "RFC 1939 §3")
def pop3_reply_syntax(run) -> Outcome:
    return _reply_syntax(run, "pop3_rule")


def _reply_syntax(run, rule: str) -> Outcome | Defer:
    first = _started(run)
    if first:
        return first
    expected = say(run, "syntax_expected", rule=say(run, rule))
    previous = {}
    cut = _cut_by_a_dot(run)
    for e in run.events:
        if e.side is not Side.SERVER or e.kind is not Kind.REPLY:
            continue
        bad = [n for n in e.notes if n.rule in SYNTAX_RULES]
        if bad and cut and _after_cut(run, cut, e):
            return Defer((STUFFING_CHECK,))  # a message line read as a status line
        if bad:
            return fail(expected, say(run, "syntax_happened", line=_line(e), why=bad[0].rule), e)
        if run.exercise.protocol == "smtp" and e.code:
            before = previous.get(e.session)
            if before is not None and continues(before.raw) and before.code != e.code:
                return fail(expected, say(run, "mixed_codes", first=before.code, second=e.code), e)
            previous[e.session] = e
    return ok()


# -- SMTP delivery -------------------------------------------------------------------------------------
def strip_trace(data: bytes) -> bytes:
    """The message without the trace header lines a server may put on top (RFC 5321 §4.4)."""
    while True:
        low = data[:20].lower()
        if not low.startswith(TRACE_HEADERS):
            return data
        end = data.find(b"\n")
        while end >= 0 and data[end + 1: end + 2] in (b" ", b"\t"):  # folded continuation lines
            end = data.find(b"\n", end + 1)
        if end < 0:
            return data
        data = data[end + 1:]


def _stored(run, user: str) -> dict[str, bytes]:
    files = run.maildir_after.get(user, {})
    return {k: strip_trace(v) for k, v in files.items() if k.startswith(("new/", "cur/"))}


def _subject(message: bytes) -> str:
    for line in message.split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            return line[8:].strip().decode("utf-8", "replace")
        if not line:
            break
    return ""


def _first_difference(got: bytes, want: bytes) -> tuple[int, bytes, bytes]:
    g, w = got.split(b"\n"), want.split(b"\n")
    for i, (a, b) in enumerate(zip(g, w), 1):
        if a != b:
            return i, a[:80], b[:80]
    i = min(len(g), len(w)) + 1
    return i, (g[i - 1][:80] if i <= len(g) else b"(end)"), (w[i - 1][:80] if i <= len(w) else b"(end)")


def _stuffed_only(got: bytes, want: bytes) -> bool:
    """``got`` differs from ``want`` only by dots at line starts (the unstuffing check owns that)."""
    return got != want and _dotless(got) == _dotless(want)


def _is_abandoned(run, user: str, got: bytes) -> bool:
    """Is ``got`` (part of) a message whose client disconnected mid-DATA?"""
    return any(_dotless(m).startswith(_dotless(got)[: max(1, len(_dotless(got)) - 8)])
               for m in run.aborted.get(user, []))


def _dotless(data: bytes) -> bytes:
    """``data`` with every run of dots at the start of a line removed: two copies of a message
    that differ only there differ by the dot-stuffing (RFC 5321 §4.5.2, RFC 1939 §3)."""
    return re.sub(rb"(^|\n)\.+", rb"\1", data)


@check("smtpd.delivery",
       "RFC 5321 §6.1, §4.1.1.4")
def delivery(run) -> Outcome | Defer:
    first = _started(run) or _unacknowledged(run)
    if first:
        return first
    for user in sorted(set(run.expected) | set(run.maildir_after) if run.expected else ()):
        want = list(run.expected.get(user, []))
        stored = _stored(run, user)
        leftover = dict(stored)
        for message in run.expected[user]:
            match = next((k for k, v in leftover.items() if v == message or _stuffed_only(v, message)), None)
            if match is not None:
                leftover.pop(match)
                want.remove(message)
        maybe = [_dotless(m) for m in run.refused.get(user, [])]  # sent, never acknowledged: not judged
        extra = {k: v for k, v in leftover.items() if not _is_abandoned(run, user, v) and _dotless(v) not in maybe}
        exp = say(run, "delivered_expected", user=user)
        if want:
            near = next(iter(extra.values()), None) if len(want) == 1 and len(extra) == 1 else None
            if near is not None:
                line, got, should = _first_difference(near, want[0])
                return fail(exp, say(run, "differs", subject=_subject(want[0]), line=line, got=got, want=should))
            return fail(exp, say(run, "missing", count=len(want), user=user, subject=_subject(want[0])))
        if extra:
            return fail(exp, say(run, "extra", user=user, count=len(extra), name=next(iter(extra))))
    return ok()


@check("smtpd.unstuff", "RFC 5321 §4.5.2")
def unstuffing(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for user, messages in sorted(run.expected.items()):
        for got in _stored(run, user).values():
            for message in messages:
                if _stuffed_only(got, message):
                    line, bad, _ = _first_difference(got, message)
                    return fail(say(run, "unstuff_expected"),
                                say(run, "unstuff_happened", user=user, subject=_subject(message), line=line, got=bad))
    return ok()


@check("smtpd.maildir",
       "ref.maildir")
def maildir(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    exp = say(run, "maildir_expected")
    for user, files in sorted(run.maildir_after.items()):
        for name in files:
            if name.startswith("tmp/"):
                return fail(exp, say(run, "tmp_left", user=user, name=name[4:]))
    for directory, name, how in run.deliveries:
        if how == "created":
            user = directory.rstrip("/").split("/")[-2]
            return fail(exp, say(run, "in_place", user=user, name=name))
    return ok()


@check("smtpd.abort", "RFC 5321 §4.1.1.10")
def abort(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for user in sorted(run.aborted):
        expected = run.expected.get(user, [])
        for name, got in _stored(run, user).items():
            if got not in expected and _is_abandoned(run, user, got):
                return fail(say(run, "abort_expected"), say(run, "abort_happened", user=user, name=name))
    return ok()


# -- both protocols: concurrency, robustness, stderr, SIGTERM, real clients ------------------------------
def _concurrency(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for c in run.concurrency:
        if c["greeted"] < c["total"]:
            return fail(say(run, "concurrency_expected", total=c["total"]),
                        say(run, "concurrency_happened", greeted=c["greeted"], total=c["total"], timeout=5.0))
    return ok()


def _still_running(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    stopped = run.stopped
    if stopped is not None and not stopped.after_sigterm:
        return fail(say(run, "robust_expected"), say(run, "robust_dead", status=run.program.status_text()))
    return ok()


def _no_traceback(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    err = run.stderr
    if "Traceback (most recent call last)" in err:
        last = [l for l in err.splitlines() if l.strip()][-1][:200]
        return fail(say(run, "traceback_expected"), say(run, "traceback_happened", line=last))
    return ok()


def _sigterm(run) -> Outcome:
    stopped = run.stopped
    exp = say(run, "sigterm_expected")
    if stopped is not None and not stopped.after_sigterm and run.program.exit_code == 0:
        # exited 0 on its own before SIGTERM: it forked into the background (whatever its child
        # managed to do before its sandbox ended: on a busy machine it may even have listened)
        return fail(exp, say(run, "sigterm_gone", status=run.program.status_text()))
    first = _started(run)
    if first:
        return first
    if not stopped.after_sigterm:
        return fail(exp, say(run, "sigterm_gone", status=run.program.status_text()))
    if not stopped.exited_in_time:
        return fail(exp, say(run, "sigterm_late"))
    if run.program.exit_code != 0:
        return fail(exp, say(run, "sigterm_code", status=run.program.status_text()))
    return ok()


def _real(run) -> Outcome | None:
    first = _started(run)
    if first:
        return first
    judged = [r for r in run.real if not r.get("skipped")]
    if not judged:
        return None  # no real mail program installed here: not judged
    for r in judged:
        if not r["ok"]:  # the runner's finding: a ("key", {fields}) of server.*, or an exception's text
            detail = say(run, r["detail"][0], **r["detail"][1]) if isinstance(r["detail"], tuple) else r["detail"]
            return fail(say(run, "real_expected", name=r["name"]), detail)
        if r.get("subject") and not any(r["subject"].encode() in v for v in _stored(run, r["user"]).values()):
            return fail(say(run, "real_expected", name=r["name"]),
                        say(run, "real_missing", name=r["name"], user=r["user"], subject=r["subject"]))
    return ok()


for _proto, _rfc_robust in (("smtpd", "RFC 5321 §4.5.3.1"), ("pop3d", "RFC 1939 §3")):
    check(f"{_proto}.concurrency", "ref.contract")(_concurrency)
    check(f"{_proto}.still-running", _rfc_robust)(_still_running)
    check(f"{_proto}.no-traceback", "ref.contract")(_no_traceback)
    check(f"{_proto}.sigterm", "ref.contract")(_sigterm)
    check(f"{_proto}.real-client",
          "RFC 5321 §4.1" if _proto == "smtpd" else "RFC 1939 §5")(_real)


# -- POP3: what the multi-line bodies hold ----------------------------------------------------------------
def _fixture(run, n: int) -> dict | None:
    return next((m for m in run.pop3_fixture if m["n"] == n), None)


def _body_steps(run, verify: str):
    for res in run.steps:
        if res.step.get("verify") == verify and res.code == "+OK" and res.body is not None:
            yield res


def _unstuffed(body: bytes) -> bytes:
    return unstuff(body[: -len(b".\r\n")] if body.endswith(b".\r\n") else body)


def _stuffing_only(body: bytes, want: bytes) -> bool:
    """A multi-line body that differs from the right one only by dots at line starts (or was cut
    at a line "." that was not stuffed): the byte-stuffing check owns that, not RETR/TOP."""
    if body == byte_stuff(want):
        return False
    got = _dotless(body[: -len(b".\r\n")] if body.endswith(b".\r\n") else body)
    return got == _dotless(want) or (bool(got) and _dotless(want).startswith(got) and b"\n.\r\n" in want)


STUFFING_CHECK = "pop3d.byte-stuffing"


def _cut_by_a_dot(run) -> dict[str, int]:
    """Session -> position in ``run.events`` of the end of the first RETR/TOP body that a line
    "." the server did not stuff cut short (RFC 1939 §3): from there on the client reads the rest
    of the message as replies, so what it sees next in that session says nothing new.  Those
    later failures belong to pop3d.byte-stuffing (one defect, one check)."""
    if run.exercise.protocol != "pop3":
        return {}
    position = {id(e): i for i, e in enumerate(run.events)}
    cut: dict[str, int] = {}
    for verify in ("retr", "top"):
        for res in _body_steps(run, verify):
            words = res.sent.text(True).split()
            m = _fixture(run, int(words[1]))
            if m is None or res.session in cut:
                continue
            want = m["wire"] if verify == "retr" else top_of(m["wire"], int(words[2]))
            got = _dotless(res.body[: -len(b".\r\n")] if res.body.endswith(b".\r\n") else res.body)
            if (res.body != byte_stuff(want) and _stuffing_only(res.body, want)
                    and len(got) < len(_dotless(want)) and res.replies):
                cut[res.session] = position.get(id(res.replies[-1]), len(run.events))
    return cut


def _after_cut(run, cut: dict[str, int], event) -> bool:
    """``event`` came after a body cut short by an unstuffed "." in its session."""
    if event is None or event.session not in cut:
        return False
    where = next((i for i, e in enumerate(run.events) if e is event), -1)
    return where > cut[event.session]


@check("pop3d.retr", "RFC 1939 §5 (RETR), §3")
def retr(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for res in _body_steps(run, "retr"):
        n = int(res.sent.text(True).split()[1])
        m = _fixture(run, n)
        body = res.body
        if body == byte_stuff(m["wire"]) or _stuffing_only(body, m["wire"]):
            continue
        got = _unstuffed(body)
        line, a, b = _first_difference(got, m["wire"])
        return fail(say(run, "retr_expected", n=n),
                    say(run, "retr_differs", command=_line(res.sent), line=line, got=a, want=b), res.replies[-1])
    return ok()


@check("pop3d.byte-stuffing", "RFC 1939 §3")
def byte_stuffing(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for verify in ("retr", "top"):
        for res in _body_steps(run, verify):
            words = res.sent.text(True).split()
            m = _fixture(run, int(words[1]))
            want = m["wire"] if verify == "retr" else top_of(m["wire"], int(words[2]))
            if res.body != byte_stuff(want) and _stuffing_only(res.body, want):
                line, a, b = _first_difference(res.body, byte_stuff(want))
                return fail(say(run, "stuffing_expected"),
                            say(run, "stuffing_happened", command=_line(res.sent), line=line, got=a, want=b),
                            res.replies[-1])
    return ok()


@check("pop3d.top", "RFC 1939 §7 (TOP)")
def top(run) -> Outcome | Defer:
    first = _started(run)
    if first:
        return first
    cut = _cut_by_a_dot(run)
    for res in _body_steps(run, "top"):
        words = res.sent.text(True).split()
        n, lines = int(words[1]), int(words[2])
        want = top_of(_fixture(run, n)["wire"], lines)
        if res.body == byte_stuff(want) or _stuffing_only(res.body, want):
            continue
        if cut and _after_cut(run, cut, res.sent):
            return Defer((STUFFING_CHECK,))  # its reply was the rest of an earlier message
        line, a, b = _first_difference(_unstuffed(res.body), want)
        return fail(say(run, "top_expected", lines=lines, n=n),
                    say(run, "retr_differs", command=_line(res.sent), line=line, got=a, want=b), res.replies[-1])
    return ok()


def _live(run, res) -> list[dict]:
    """The fixture messages not deleted in ``res``'s session before it (DELE +OK, undone by RSET)."""
    deleted: set[int] = set()
    for other in run.steps:
        if other is res:
            break
        if other.session != res.session or other.sent is None:
            continue
        words = other.sent.text(True).split()
        verb = words[0].upper() if words else ""
        if verb == "DELE" and other.code == "+OK" and len(words) > 1 and words[1].isdigit():
            deleted.add(int(words[1]))
        elif verb == "RSET" and other.code == "+OK":
            deleted.clear()
    return [m for m in run.pop3_fixture if m["n"] not in deleted]


@check("pop3d.sizes", "RFC 1939 §5 (STAT, LIST)")
def sizes(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    for res in run.steps:
        verify = res.step.get("verify")
        if verify not in ("stat", "list") or res.code != "+OK" or res.sent is None:
            continue
        live = _live(run, res)
        if verify == "stat":
            want = f"+OK {len(live)} {sum(len(m['wire']) for m in live)}"
            got = " ".join(res.last_reply.text(True).split()[:3])
        else:
            want = " / ".join(f"{m['n']} {len(m['wire'])}" for m in live)
            body = res.body or b""
            got = " / ".join(" ".join(l.split()[:2]) for l in body.decode("utf-8", "replace").split("\r\n")
                             if l and l != ".")
        if got != want:
            return fail(say(run, "sizes_expected", command=_line(res.sent), want=want),
                        say(run, "reply_got", got=repr(got)), res.replies[-1] if res.replies else res.sent)
    return ok()


@check("pop3d.uidl", "RFC 1939 §7 (UIDL)")
def uidl(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    exp = say(run, "uidl_expected")
    seen: dict[int, str] = {}
    for res in run.steps:
        if res.step.get("verify") != "uidl" or res.code != "+OK":
            continue
        pairs = []
        if res.body is not None:
            for line in res.body.decode("utf-8", "replace").split("\r\n"):
                words = line.split()
                if len(words) == 2 and words[0].isdigit():
                    pairs.append((int(words[0]), words[1]))
        else:
            words = res.last_reply.text(True).split()
            if len(words) >= 3 and words[1].isdigit():
                pairs.append((int(words[1]), words[2]))
        owners: dict[str, int] = {}
        for n, uid in pairs:
            if not 1 <= len(uid) <= MAX_UIDL_LENGTH or not all(0x21 <= ord(c) <= 0x7E for c in uid):
                return fail(exp, say(run, "uidl_bad", uid=uid, n=n), res.replies[-1])
            if uid in owners and owners[uid] != n:
                return fail(exp, say(run, "uidl_dup", a=owners[uid], b=n, uid=uid), res.replies[-1])
            owners[uid] = n
            if n in seen and seen[n] != uid:
                return fail(exp, say(run, "uidl_changed", n=n, first=seen[n], second=uid), res.replies[-1])
            seen[n] = uid
    return ok()


def _present(run, m: dict) -> bool:
    """Is fixture message ``m`` still in the maildrop (by its unique name; a server may move it to cur/)?"""
    files = run.maildir_after.get(run.variables["user"], {})
    return any(k.split("/", 1)[1].split(":")[0] == m["uid"] for k in files if not k.startswith("tmp/"))


@check("pop3d.update", "RFC 1939 §6")
def update(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    deleted = set(run.scenario.mailbox.get("deleted_after", []))
    exp = say(run, "update_expected")
    for m in run.pop3_fixture:
        if m["n"] in deleted and _present(run, m):
            return fail(exp, say(run, "update_kept", n=m["n"], path=m["path"]))
    for m in run.pop3_fixture:
        if m["n"] not in deleted and not _present(run, m):
            return fail(exp, say(run, "update_lost", n=m["n"], path=m["path"]))
    return ok()


@check("pop3d.no-update-on-drop", "RFC 1939 §6")
def no_update_on_drop(run) -> Outcome:
    first = _started(run)
    if first:
        return first
    deleted = set(run.scenario.mailbox.get("deleted_after", []))
    for m in run.pop3_fixture:
        if m["n"] not in deleted and not _present(run, m):
            return fail(say(run, "drop_expected"), say(run, "drop_lost", n=m["n"], path=m["path"]))
    return ok()
