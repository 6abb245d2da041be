"""SMTP client checks (exercise smtp-client): envelope syntax, the message, error handling."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import getaddresses, parsedate_to_datetime

from mailtrace.grading.checks import Outcome, check, ok, said
from mailtrace.grading.checks.common import out_of_step, stepped
from mailtrace.protocols.smtp.data import unstuff as core_unstuff
from mailtrace.protocols.smtp.spec import MISSING_BRACKETS
from mailtrace.transcript.event import Event, Kind, Side

def _addr(e: Event) -> str:
    """The address of a MAIL FROM / RCPT TO command as the SMTP core parsed it (``Event.args``,
    brackets or not); the argument as sent when the core could not read a path in it."""
    if e.args is None:
        return e.text().partition(":")[2].strip()
    return (e.args.reverse_path if e.verb.upper() == "MAIL" else e.args.forward_path) or ""


def _bracketed(e: Event) -> bool:
    """Did the path come inside < > (RFC 5321 §4.1.2)?  The core's parser notes it when not."""
    return e.args is not None and all(n.rule != MISSING_BRACKETS for n in e.notes)


def _code(run, e: Event) -> str:
    replies = run.reply_to(e)
    return replies[-1].code if replies else ""


def data_events(run) -> list[Event]:
    return [e for e in run.events if e.side is Side.CLIENT and e.kind is Kind.DATA and e.verb.upper() == "DATA"]


def unstuff(raw: bytes) -> bytes:
    """The message as the server stores it: final dot removed (also after a bare LF, which a
    broken client may send), then leading dots un-stuffed (RFC 5321 §4.5.2)."""
    for end in (b"\r\n.\r\n", b"\n.\n", b"\n.\r\n"):
        if raw.endswith(end):
            raw = raw[: len(raw) - len(end) + (2 if end.startswith(b"\r\n") else 1)]
            break
    else:
        if raw in (b".\r\n", b".\n"):
            raw = b""
    return core_unstuff(raw)  # the per-line rule is the SMTP core's, not a second copy


def unterminated(run) -> Event | None:
    """A message the server never saw end: the client was killed (or closed) while the server
    still waited for CRLF . CRLF (RFC 5321 §4.1.1.4), e.g. the final dot glued to the last line."""
    return next((e for e in data_events(run) if e.incomplete), None)


def accepted_message(run) -> tuple[Event | None, bytes | None]:
    """The last DATA body the server answered 250 (or any body when none was)."""
    best = (None, None)
    for e in data_events(run):
        if _code(run, e).startswith("2") or best[0] is None:
            best = (e, unstuff(e.raw))
    return best


def _parse(msg: bytes):
    return email.message_from_bytes(msg, policy=email.policy.compat32)


def _decoded_header(value: str | None) -> str:
    value = value or ""
    try:
        value = value.encode("utf-8", "surrogateescape").decode("utf-8")  # raw 8-bit (smtp.7bit says so)
    except UnicodeError:
        pass
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


@check("smtp.angle-brackets", "RFC 5321 §4.1.1.2, §4.1.1.3")
def angle_brackets(run) -> Outcome:
    if not run.commands("MAIL") or not run.commands("RCPT"):
        return said(run, "smtp.angle-brackets.no-paths")
    for e in run.commands():
        if e.verb.upper() not in ("MAIL", "RCPT"):
            continue
        if not _bracketed(e):
            return said(run, "smtp.angle-brackets.bare", e, "RFC 5321 §4.1.2 (Reverse-path, Forward-path)")
    return ok()


@check("smtp.envelope", "RFC 5321 §3.3")
def envelope(run) -> Outcome:
    want_from = run.variables.get("arg_from", "")
    want_to = run.variables.get("arg_to", [])
    mails = run.commands("MAIL")
    if not mails:
        return said(run, "smtp.envelope.no-mail")
    for m in mails:
        addr = _addr(m)
        if addr.lower() != want_from.lower():
            return said(run, "smtp.envelope.sender", m, want=want_from, got=addr)
    rcpts = run.commands("RCPT")
    got_to = []
    for r in rcpts:
        got_to.append(_addr(r).lower())
    missing = [a for a in want_to if a.lower() not in got_to]
    if missing:
        return said(run, "smtp.envelope.recipients", rcpts[-1] if rcpts else mails[-1], want=", ".join(want_to),
                    missing=", ".join(missing))
    return ok()


@check("smtp.helo-fallback", "RFC 5321 §3.2, §4.1.4")
def helo_fallback(run) -> Outcome:
    if not run.commands("EHLO") and not run.commands("HELO"):
        return said(run, "smtp.helo-fallback.no-greeting")
    for sid in run.sessions():
        first = next((c for c in run.commands() if c.session == sid and c.verb.upper() in ("EHLO", "HELO")), None)
        if first is not None and first.verb.upper() == "HELO":
            return said(run, "smtp.helo-fallback.helo-first", first)
    for e in run.commands("EHLO"):
        if _code(run, e)[:1] in ("5",):
            later = [c for c in run.commands() if c.seq > e.seq and c.session == e.session]
            if not later or later[0].verb.upper() != "HELO":
                return said(run, "smtp.helo-fallback.no-helo", later[0] if later else e)
            return ok()
    return ok()


@check("smtp.dot-stuffing", "RFC 5321 §4.5.2")
def dot_stuffing(run) -> Outcome:
    e, _ = accepted_message(run)
    if e is None:
        return said(run, "smtp.no-message")
    body = run.variables.get("arg_body_text", "")
    wire = e.raw.replace(b"\r\n", b"\n")
    for line in body.splitlines():
        if line.startswith("."):
            stuffed = b"\n." + line.encode("utf-8")
            # (a last line with the final dot glued to it is smtp.body's business, see unterminated)
            if stuffed + b"\n" not in wire and not wire.endswith(stuffed + b".\n"):
                return said(run, "smtp.dot-stuffing.unstuffed", e, line=line[:40], stuffed=("." + line)[:41])
    return ok()


@check("smtp.headers", "RFC 5322 §3.6")
def headers(run) -> Outcome:
    e, msg = accepted_message(run)
    if e is None:
        return said(run, "smtp.no-message")
    if b"\n\n" not in msg.replace(b"\r\n", b"\n"):
        return said(run, "smtp.headers.no-separator", e, "RFC 5322 §2.1")
    m = _parse(msg)
    missing = [h for h in ("From", "To", "Subject", "Date", "Message-ID") if m.get(h) is None]
    if missing:
        return said(run, "headers.missing", e, "ref.required-headers", fields="From, To, Subject, Date, Message-ID",
                    missing=", ".join(missing))
    try:
        parsedate_to_datetime(m["Date"])
    except (TypeError, ValueError, IndexError):
        return said(run, "headers.bad-date", e, "RFC 5322 §3.3", date=m["Date"])
    if not re.fullmatch(r"\s*<[^<>@\s]+@[^<>@\s]+>\s*", m["Message-ID"] or ""):
        return said(run, "headers.message-id", e, "RFC 5322 §3.6.4", value=m["Message-ID"])
    want_subject = run.variables.get("arg_subject", "")
    if want_subject and _decoded_header(m["Subject"]).strip() != want_subject:
        return said(run, "headers.subject", e, want=want_subject, got=_decoded_header(m["Subject"]))
    addrs = [a.lower() for _, a in getaddresses([_decoded_header(m.get("From", ""))])]
    if run.variables.get("arg_from", "").lower() not in addrs:
        return said(run, "headers.address", e, field="From", want=run.variables.get("arg_from"), got=m.get("From"))
    return ok()


@check("smtp.body", "RFC 5322 §2.3; RFC 2045 §6")
def body(run) -> Outcome | None:
    cut = unterminated(run)
    if cut is not None and not cut.raw.endswith(b"\r\n.\r\n"):
        last = cut.raw.rstrip(b"\r\n").rsplit(b"\n", 1)[-1][-60:]
        return said(run, "smtp.body.unterminated-killed" if run.program.timed_out else "smtp.body.unterminated-closed",
                    cut, "RFC 5321 §4.1.1.4", last=last.decode("utf-8", "replace"))
    e, msg = accepted_message(run)
    if e is None:
        return said(run, "smtp.no-message")
    if b"\n\n" not in msg.replace(b"\r\n", b"\n"):
        return None  # no header/body separator: smtp.headers says so, the body cannot be found
    m = _parse(msg)
    if m.is_multipart():
        return said(run, "smtp.body.multipart", e)
    payload = m.get_payload(decode=True) or b""
    charset = m.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
        text = payload.decode("utf-8", "replace")
    want = run.variables.get("arg_body_text", "")
    norm = lambda s: [line.rstrip("\r") for line in s.replace("\r\n", "\n").rstrip("\n").split("\n")]  # noqa: E731
    if norm(text) != norm(want):
        got_lines, want_lines = norm(text), norm(want)
        for i, (a, b) in enumerate(zip(got_lines, want_lines)):
            if a != b:
                return said(run, "smtp.body.line", e, n=i + 1, want=b[:80], got=a[:80])
        return said(run, "smtp.body.count", e, want=len(want_lines), got=len(got_lines))
    return ok()


@check("smtp.7bit", "RFC 2047 §2; RFC 2045 §6")
def seven_bit(run) -> Outcome:
    e, msg = accepted_message(run)
    if e is None:
        return said(run, "smtp.no-message")
    if any(b > 127 for b in e.raw):
        head = msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        return said(run, "smtp.7bit.header" if any(b > 127 for b in head) else "smtp.7bit.body", e, "ref.seven-bit")
    m = _parse(msg)
    if any(b > 127 for b in run.variables.get("arg_body_text", "").encode()):
        if (m.get("Content-Transfer-Encoding") or "").strip().lower() not in ("quoted-printable", "base64") \
                or "charset" not in (m.get("Content-Type") or "").lower():
            return said(run, "smtp.7bit.no-mime", e, "RFC 2045 §5, §6", ctype=m.get("Content-Type"),
                        cte=m.get("Content-Transfer-Encoding"))
    return ok()


@check("smtp.stops-after-error", "RFC 5321 §4.2.1, §3.3")
def stops_after_error(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a reply as the whole: replies no longer match its commands
    errors = [e for e in run.events if e.side is Side.SERVER and e.kind is Kind.REPLY and e.code[:1] in ("4", "5")]
    if not errors and not run.commands():
        return said(run, "smtp.stops-after-error.nothing")
    for sid in run.sessions():
        # commands sent before the reply they should have waited for are waits-for-reply's business
        every = [e for e in run.events if e.session == sid and e.side is Side.CLIENT
                 and e.kind in (Kind.COMMAND, Kind.DATA)]
        cmds = [e for e in every if (e.arrived or "after-reply") not in ("before-reply", "same-segment")]
        judged = {id(e) for e in cmds}
        greeting = next((e for e in run.events if e.session == sid and e.side is Side.SERVER
                         and e.kind is Kind.REPLY), None)
        if greeting is not None and greeting.code[:1] in ("4", "5"):
            bad = [c for c in cmds if c.verb.upper() not in ("QUIT",)]
            if bad:
                return said(run, "smtp.stops-after-error.greeting", bad[0], "RFC 5321 §3.1, §4.2.1", verb=bad[0].verb)
        # RFC 2920 §3.1: with PIPELINING the client may send its RCPTs and DATA after MAIL without
        # reading MAIL's reply; when they arrive after a refusal (a client writing each line
        # apart) nothing says whether it had read it.  Its message content and exit say that.
        pipelining = any(e.session == sid and e.side is Side.SERVER and e.verb.upper() == "EHLO"
                         and e.code.startswith("2") and b"PIPELINING" in e.raw.upper() for e in run.events)
        accepted_rcpt = False
        mail_ok = True
        for c in every:  # pipelined commands (RFC 2920) count for the state, only waited-for ones are judged
            verb = c.verb.upper()
            code = _code(run, c)
            if verb in ("MAIL",):
                mail_ok = not code or code.startswith("2")  # "": no reply seen, not a refusal
                accepted_rcpt = False
                if not mail_ok and not pipelining:
                    later = [x for x in cmds if x.seq > c.seq and x.verb.upper() in ("RCPT", "DATA")]
                    if later:
                        return said(run, "smtp.stops-after-error.mail", later[0], verb=later[0].verb, code=code)
            elif verb == "RCPT" and code.startswith("2"):
                accepted_rcpt = True
            elif id(c) not in judged:
                continue
            elif verb == "DATA" and c.kind is Kind.COMMAND and not accepted_rcpt:
                return said(run, "smtp.stops-after-error.no-recipient", c)
            elif verb == "DATA" and c.kind is Kind.DATA:
                dcmd = [x for x in cmds if x.kind is Kind.COMMAND and x.verb.upper() == "DATA" and x.seq < c.seq]
                if dcmd and not _code(run, dcmd[-1]).startswith("3"):
                    return said(run, "smtp.stops-after-error.no-354", c, code=_code(run, dcmd[-1]))
    return ok()


@check("smtp.partial-recipients", "RFC 5321 §3.3")
def partial_recipients(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a reply as the whole: whole-reply / multiline
    refused = [r for r in run.commands("RCPT") if _code(run, r)[:1] in ("4", "5")]
    if not refused:
        return said(run, "smtp.partial-recipients.none-refused")
    want = run.variables.get("arg_to", [])
    sent = run.commands("RCPT")
    if len(sent) < len(want):
        return said(run, "smtp.partial-recipients.gave-up", refused[0], sent=len(sent), want=len(want))
    if not data_events(run):
        return said(run, "smtp.partial-recipients.no-data", refused[-1])
    return ok()
