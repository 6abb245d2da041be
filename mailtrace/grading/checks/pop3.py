"""POP3 client checks (exercise pop3-client): saved messages, un-stuffing, deletions, errors."""

from __future__ import annotations

from dataclasses import replace

from mailtrace.grading.checks import Outcome, check, ok, said
from mailtrace.grading.checks.common import out_of_step, stepped
from mailtrace.protocols.pop3.spec import byte_stuff
from mailtrace.transcript.event import Kind, Side


def _out_files(run) -> dict[str, bytes]:
    out = run.variables.get("arg_out", "out").strip("/")
    prefix = out + "/"
    return {k[len(prefix):]: v for k, v in run.files.items() if k.startswith(prefix) and not k.endswith("/")}


def _stuffed(data: bytes) -> bytes:
    """The message as the lab server put it on the wire, without the final ".CRLF" line
    (the POP3 core's byte_stuff, RFC 1939 §3, rather than a second copy of the rule)."""
    return byte_stuff(data)[: -len(b".\r\n")]


def _retr(run, n: int):
    for e in run.commands("RETR"):
        if e.text().split()[1:2] == [str(n)]:
            return e
    return None


def _framing_only(got: bytes, want: bytes) -> bool:
    """``got`` differs from ``want`` only by the multi-line framing: byte-stuffing left in, the
    terminating line kept, or the message cut at a line starting with "." (taken for the end)."""
    if got == want:
        return False
    stuffed = _stuffed(want)
    if got in (stuffed, want + b".\r\n", stuffed + b".\r\n", want + b"\r\n.\r\n"):
        return True
    for body in (want, stuffed):
        cut = len(got)
        if cut < len(body) and body[:cut] == got and body[cut:cut + 1] == b"." and \
                (cut == 0 or body[cut - 2:cut] == b"\r\n"):
            return True
    return False


@check("pop3.message-bytes", "RFC 1939 §7 (RETR)")
def message_bytes(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a reply as a whole one: pop3.whole-reply / pop3.multiline
    files = _out_files(run)
    out = run.variables.get("arg_out", "out").strip("/")
    if out + "/" not in run.files and (run.program.exit_code == 0 or not run.sessions()):
        return said(run, "pop3.message-bytes.no-folder", out=out)
    for m in run.fixture:
        name = f"{m['n']}.eml"
        got = files.get(name)
        if got is not None and _framing_only(got, m["data"]):
            return ok()  # pop3.unstuffing takes this; after it the client is out of step
        if got is None:
            return said(run, "pop3.message-bytes.missing", _retr(run, m["n"]), out=run.variables.get("arg_out"),
                        name=name, n=m["n"], files=", ".join(sorted(files)) or "-")
        if got == m["data"] or _framing_only(got, m["data"]):
            continue
        if got.replace(b"\r\n", b"\n") == m["data"].replace(b"\r\n", b"\n"):
            return said(run, "pop3.message-bytes.crlf", _retr(run, m["n"]), name=name)
        i = next((k for k, (a, b) in enumerate(zip(got, m["data"])) if a != b), min(len(got), len(m["data"])))
        return said(run, "pop3.message-bytes.differs", _retr(run, m["n"]), name=name, size=len(m["data"]),
                    got_size=len(got), at=i, got=got[max(0, i - 10):i + 20], want=m["data"][max(0, i - 10):i + 20])
    return ok()


@check("pop3.unstuffing", "RFC 1939 §3")
def unstuffing(run) -> Outcome:
    files = _out_files(run)
    for m in run.fixture:
        got = files.get(f"{m['n']}.eml")
        if got is None and m["kind"] in ("dots", "tagged"):
            return said(run, "pop3.unstuffing.not-saved", _retr(run, m["n"]), n=m["n"])
        if got is not None and _framing_only(got, m["data"]):
            kept_end = got.endswith(b"\r\n.\r\n") and not m["data"].endswith(b"\r\n.\r\n")
            return said(run, "pop3.unstuffing.final-dot" if kept_end else "pop3.unstuffing.cut"
                        if len(got) < len(m["data"]) else "pop3.unstuffing.stuffed", _retr(run, m["n"]))
    return ok()


@check("pop3.delete", "RFC 1939 §5 (DELE)")
def delete(run) -> Outcome:
    deles = run.commands("DELE")
    want = "--delete" in run.variables.get("argv", [])
    if not want:
        if deles:
            return said(run, "pop3.delete.without", deles[0])
        if len(run.commands("RETR")) < len(run.fixture):
            # not every message retrieved: whether it would have deleted the rest cannot be seen
            # (pop3.message-bytes owns the missing message), so this is not judged
            return replace(said(run, "pop3.delete.not-retrieved"), unobserved=True)
        return ok()
    numbers = {e.text().split()[1] if len(e.text().split()) > 1 else "" for e in deles}
    for m in run.fixture:
        if str(m["n"]) not in numbers:
            return said(run, "pop3.delete.missing", deles[-1] if deles else _retr(run, m["n"]), n=m["n"])
        retr, dele = _retr(run, m["n"]), next(e for e in deles if e.text().split()[1:2] == [str(m["n"])])
        if retr is None or retr.seq > dele.seq:
            return said(run, "pop3.delete.too-early", dele, n=m["n"])
    left = run.store_after.get("messages", [])
    if left and not run.store_after.get("error"):
        # DELE only marks: the deletions happen when QUIT moves the session to UPDATE
        return said(run, "pop3.delete.not-committed", deles[-1], "ref.update", left=len(left))
    return ok()


@check("pop3.stops-after-error", "RFC 1939 §7 (USER, PASS)")
def stops_after_error(run) -> Outcome:
    if not run.commands():
        return said(run, "pop3.stops-after-error.nothing")
    refused = None
    for e in run.events:
        if e.side is Side.CLIENT and e.kind is Kind.COMMAND:
            if refused is not None and e.verb.upper() not in ("QUIT", "USER", "PASS", "CAPA", "AUTH", "APOP"):
                return said(run, "pop3.stops-after-error.went-on", e, verb=e.verb, reply=refused.text())
            # RFC 1939 §7 (USER): after -ERR "the client may either issue a new authentication
            # command or may issue the QUIT command"; PASS is only for a USER that got +OK
            if refused is not None and refused.verb.upper() == "USER" and e.verb.upper() == "PASS":
                return said(run, "pop3.stops-after-error.pass-after-user", e, "RFC 1939 §7 (USER)",
                            reply=refused.text())
            if e.verb.upper() in ("USER", "PASS", "APOP"):
                replies = run.reply_to(e)
                if replies and replies[0].code == "-ERR":
                    refused = replies[0]
                elif replies and replies[0].code == "+OK" and e.verb.upper() != "USER":
                    refused = None
    return ok()
