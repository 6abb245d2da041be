"""POP3 client checks (exercise pop3-client): saved messages, un-stuffing, deletions, errors."""

from __future__ import annotations

from mailtrace.grading.checks import Outcome, check, fail, ok
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


@check("pop3.message-bytes", "Every message saved as DIR/<n>.eml, byte for byte (CRLF kept)", "RFC 1939 §7 (RETR)")
def message_bytes(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a reply as a whole one: pop3.whole-reply / pop3.multiline
    files = _out_files(run)
    out = run.variables.get("arg_out", "out").strip("/")
    if out + "/" not in run.files and (run.program.exit_code == 0 or not run.sessions()):
        return fail(f"the folder {out} created (os.makedirs(DIR, exist_ok=True)), even for an empty maildrop",
                    "it does not exist")
    for m in run.fixture:
        name = f"{m['n']}.eml"
        got = files.get(name)
        if got is not None and _framing_only(got, m["data"]):
            return ok()  # pop3.unstuffing takes this; after it the client is out of step
        if got is None:
            return fail(f"{run.variables.get('arg_out')}/{name} with message {m['n']}",
                        f"no file {name} (files written: {', '.join(sorted(files)) or 'none'})", _retr(run, m["n"]))
        if got == m["data"] or _framing_only(got, m["data"]):
            continue
        if got.replace(b"\r\n", b"\n") == m["data"].replace(b"\r\n", b"\n"):
            return fail(f"{name} with CRLF line endings, exactly as the server sent them (open the file in 'wb')",
                        "the line endings were changed to LF", _retr(run, m["n"]))
        i = next((k for k, (a, b) in enumerate(zip(got, m["data"])) if a != b), min(len(got), len(m["data"])))
        return fail(f"{name}: {len(m['data'])} octets exactly as in the maildrop",
                    f"{len(got)} octets, first difference at octet {i}: got {got[max(0, i - 10):i + 20]!r}, "
                    f"expected {m['data'][max(0, i - 10):i + 20]!r}", _retr(run, m["n"]))
    return ok()


@check("pop3.unstuffing", "Removes the byte-stuffing and the final '.' line", "RFC 1939 §3")
def unstuffing(run) -> Outcome:
    files = _out_files(run)
    for m in run.fixture:
        got = files.get(f"{m['n']}.eml")
        if got is None and m["kind"] in ("dots", "tagged"):
            return fail(f"message {m['n']} (it has lines starting with '.') saved without the stuffing",
                        f"{m['n']}.eml was not saved", _retr(run, m["n"]))
        if got is not None and _framing_only(got, m["data"]):
            if got.endswith(b"\r\n.\r\n") and not m["data"].endswith(b"\r\n.\r\n"):
                happened = "the terminating '.' line was saved as part of the message"
            elif len(got) < len(m["data"]):
                happened = "the message was cut at a line starting with '.': only a line holding just '.' ends it"
            else:
                happened = "lines starting with '.' were saved with the extra '.' the server added"
            return fail("a line starting with '..' saved as '.': the first dot is stuffing; the final '.' line "
                        "is not part of the message", happened, _retr(run, m["n"]))
    return ok()


@check("pop3.delete", "DELE each message with --delete, none without", "RFC 1939 §5 (DELE)")
def delete(run) -> Outcome:
    deles = run.commands("DELE")
    want = "--delete" in run.variables.get("argv", [])
    if not want:
        if deles:
            return fail("no DELE without --delete", "the client deleted messages", deles[0])
        if len(run.commands("RETR")) < len(run.fixture):
            return fail("every message retrieved (RETR) and none deleted", "not every message was retrieved")
        return ok()
    numbers = {e.text().split()[1] if len(e.text().split()) > 1 else "" for e in deles}
    for m in run.fixture:
        if str(m["n"]) not in numbers:
            return fail(f"DELE {m['n']} after message {m['n']} was saved", f"no DELE {m['n']}",
                        deles[-1] if deles else _retr(run, m["n"]))
        retr, dele = _retr(run, m["n"]), next(e for e in deles if e.text().split()[1:2] == [str(m["n"])])
        if retr is None or retr.seq > dele.seq:
            return fail(f"RETR {m['n']} (and saving it) before DELE {m['n']}", "DELE came first", dele)
    left = run.store_after.get("messages", [])
    if left and not run.store_after.get("error"):
        # DELE only marks: the deletions happen when QUIT moves the session to UPDATE
        return fail("the deletions committed: QUIT after the DELEs (the server deletes in the UPDATE state)",
                    f"{len(left)} message(s) still in the mailbox: the session ended without QUIT, so the "
                    "server undid every DELE", deles[-1], "RFC 1939 §6 (the UPDATE state)")
    return ok()


@check("pop3.stops-after-error", "Stops after -ERR to USER or PASS (login refused)", "RFC 1939 §7 (USER, PASS)")
def stops_after_error(run) -> Outcome:
    if not run.commands():
        return fail("USER and PASS, stopping after a -ERR", "the client sent nothing")
    refused = None
    for e in run.events:
        if e.side is Side.CLIENT and e.kind is Kind.COMMAND:
            if refused is not None and e.verb.upper() not in ("QUIT", "USER", "PASS", "CAPA", "AUTH", "APOP"):
                return fail("after the login is refused: QUIT, a message on stderr, exit 1",
                            f"the client went on with {e.verb} after {refused.text()!r}", e)
            # RFC 1939 §7 (USER): after -ERR "the client may either issue a new authentication
            # command or may issue the QUIT command"; PASS is only for a USER that got +OK
            if refused is not None and refused.verb.upper() == "USER" and e.verb.upper() == "PASS":
                return fail("after -ERR to USER: QUIT (a message on stderr, exit 1), never PASS",
                            f"the client sent PASS after {refused.text()!r}", e, "RFC 1939 §7 (USER)")
            if e.verb.upper() in ("USER", "PASS", "APOP"):
                replies = run.reply_to(e)
                if replies and replies[0].code == "-ERR":
                    refused = replies[0]
                elif replies and replies[0].code == "+OK" and e.verb.upper() != "USER":
                    refused = None
    return ok()
