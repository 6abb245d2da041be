"""IMAP client checks (exercise imap-client): tags, literals, quoting, flags, errors."""

from __future__ import annotations

from mailtrace.grading.checks import Outcome, check, fail, ok
from mailtrace.grading.checks.common import out_of_step, stepped
from mailtrace.transcript.event import Event, Kind, Side


def _out_files(run) -> dict[str, bytes]:
    out = run.variables.get("arg_out", "out").strip("/")
    prefix = out + "/"
    return {k[len(prefix):]: v for k, v in run.files.items() if k.startswith(prefix) and not k.endswith("/")}


def _tagged(run, cmd: Event) -> Event | None:
    for e in run.events:
        if e.seq > cmd.seq and e.session == cmd.session and e.side is Side.SERVER and e.kind is Kind.REPLY \
                and e.tag == cmd.tag and e.code in ("OK", "NO", "BAD"):
            return e
    return None


def _fetch_for(run, uid: int) -> Event | None:
    for e in run.commands():
        words = e.text().upper().split()
        if "FETCH" in words and str(uid) in e.text():
            return e
    return None


def expected_uids(run) -> list[int]:
    unseen = "--unseen-only" in run.variables.get("argv", [])
    box = run.variables.get("arg_mailbox", "INBOX")
    return [m["uid"] for m in run.fixture if m["mailbox"] == box and not (unseen and "\\Seen" in m["flags"])]


@check("imap.unique-tags", "A fresh tag for every command", "RFC 3501 §2.2.1")
def unique_tags(run) -> Outcome:
    if len(run.commands()) < 2:
        return fail("tagged commands, a fresh tag for each", "the client sent fewer than two commands")
    for sid in run.sessions():
        seen: dict[str, Event] = {}
        for e in run.commands():
            if e.session != sid or not e.tag:
                continue
            if e.tag in seen:
                return fail("a different tag on every command (A1, A2, A3 ...)",
                            f"tag {e.tag!r} was already used by {seen[e.tag].text()[:60]!r}", e, "RFC 3501 §2.2.1")
            seen[e.tag] = e
    return ok()


@check("imap.literals", "Saves each message as the literal's exact octets", "RFC 3501 §4.3 (literals)")
def literals(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a response as a whole one: imap.whole-reply's business
    files = _out_files(run)
    if not files and expected_uids(run):
        return fail("each message saved as DIR/<uid>.eml, the literal's octets exactly", "no message was saved")
    by_uid = {m["uid"]: m for m in run.fixture}
    intact = {m["data"] for m in run.fixture}
    for name, got in sorted(files.items()):
        try:
            uid = int(name.removesuffix(".eml"))
        except ValueError:
            continue
        m = by_uid.get(uid)
        if m is None or got in intact:
            continue  # some message, byte for byte: under the wrong name, that is imap.selection's business
        if got.replace(b"\r\n", b"\n") == m["data"].replace(b"\r\n", b"\n"):
            return fail(f"{name}: the literal's octets exactly, CRLF kept", "the line endings were changed",
                        _fetch_for(run, uid))
        i = next((k for k, (a, b) in enumerate(zip(got, m["data"])) if a != b), min(len(got), len(m["data"])))
        return fail(f"{name}: the {len(m['data'])} octets announced by {{{len(m['data'])}}}, read by count "
                    "(a literal may contain lines that look like responses)",
                    f"{len(got)} octets, first difference at octet {i}: got {got[max(0, i - 10):i + 20]!r}, "
                    f"expected {m['data'][max(0, i - 10):i + 20]!r}", _fetch_for(run, uid))
    return ok()


@check("imap.selection", "Saves exactly the messages asked for (all, or --unseen-only)", "RFC 3501 §6.4.4 (SEARCH)")
def selection(run) -> Outcome:
    files = _out_files(run)
    want = {f"{u}.eml" for u in expected_uids(run)}
    got = set(files)
    if want != got:
        missing, extra = sorted(want - got), sorted(got - want)
        happened = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                        f"unexpected {', '.join(extra)}" if extra else "") if x)
        search = [e for e in run.commands() if "SEARCH" in e.text().upper()]
        return fail(f"files named by UID: {', '.join(sorted(want)) or 'none'}", happened,
                    search[-1] if search else None, "RFC 3501 §2.3.1.1 (UIDs), §6.4.8 (UID)")
    return ok()


@check("imap.quoting", "Quotes strings that hold spaces, quotes or backslashes", "RFC 3501 §4.3 (strings), §9")
def quoting(run) -> Outcome:
    for e in run.commands():
        if e.verb.upper() in ("LOGIN", "SELECT", "EXAMINE"):
            reply = _tagged(run, e)
            if reply is not None and reply.code in ("NO", "BAD"):
                return fail(f"{e.verb} accepted: a password or mailbox name with spaces, '\"' or '\\' sent as a quoted "
                            "string (\"...\" with \\\" and \\\\ escaped) or a literal",
                            f"the server answered {reply.text()[:100]!r}", e, "RFC 3501 §4.3, §9 (astring)")
    if not run.commands("LOGIN") and not run.commands("AUTHENTICATE"):
        return fail("a LOGIN command", "no LOGIN was sent")
    return ok()


@check("imap.stops-after-error", "Stops after NO or BAD (login refused, mailbox missing)", "RFC 3501 §7.1")
def stops_after_error(run) -> Outcome:
    if not run.commands():
        return fail("LOGIN, stopping after a NO or BAD", "the client sent nothing")
    allowed = {"LOGOUT", "LOGIN", "AUTHENTICATE", "CAPABILITY", "NOOP"}  # a retry, or goodbye
    for e in run.commands():
        if e.verb.upper() not in ("LOGIN", "AUTHENTICATE", "SELECT", "EXAMINE"):
            continue
        reply = _tagged(run, e)
        if reply is None or reply.code not in ("NO", "BAD"):
            continue
        later = [c for c in run.commands() if c.seq > e.seq and c.session == e.session
                 and c.verb.upper() not in allowed]
        if later:
            return fail(f"after {reply.code} to {e.verb}: LOGOUT, the server's text on stderr, exit 1",
                        f"the client went on with {later[0].verb} after {reply.text()[:80]!r}", later[0])
    return ok()


@check("imap.flags", "Marks messages \\Seen only with --mark-seen (BODY.PEEK otherwise)", "RFC 3501 §6.4.5, §6.4.6")
def flags(run) -> Outcome:
    mark = "--mark-seen" in run.variables.get("argv", [])
    after = {m["uid"]: m for m in run.store_after.get("messages", [])}
    if expected_uids(run) and not any("FETCH" in e.verb.upper() for e in run.commands()):
        return fail("messages fetched (BODY.PEEK[] unless --mark-seen)", "the client fetched nothing")
    for m in run.fixture:
        if m["mailbox"] != run.variables.get("arg_mailbox", "INBOX"):
            continue
        now = after.get(m["uid"])
        if now is None:
            continue
        fetched = m["uid"] in expected_uids(run)
        was, is_ = "\\Seen" in m["flags"], "\\Seen" in now["flags"]
        if mark and fetched and not is_:
            return fail(f"UID {m['uid']} marked \\Seen (UID STORE {m['uid']} +FLAGS (\\Seen))",
                        "it is still unseen", _fetch_for(run, m["uid"]))
        if mark and not fetched and is_ and not was:
            # STORE with a sequence number where a UID was meant (RFC 3501 §6.4.8: only UID STORE
            # takes UIDs), or a place in the list fetched taken for a sequence number
            store = next((e for e in run.commands() if "STORE" in e.verb.upper() or "STORE" in e.text().upper()),
                         None)
            return fail(f"only the messages fetched marked \\Seen (UID STORE <uid> +FLAGS (\\Seen))",
                        f"UID {m['uid']}, which was not to be fetched, was marked \\Seen", store,
                        "RFC 3501 §6.4.6, §6.4.8")
        if not mark and is_ and not was:
            return fail(f"UID {m['uid']} left unseen without --mark-seen (fetch BODY.PEEK[], not BODY[])",
                        "it was marked \\Seen", _fetch_for(run, m["uid"]), "RFC 3501 §6.4.5 (BODY.PEEK)")
    return ok()


@check("imap.untagged", "Copes with unsolicited untagged responses in any order", "RFC 3501 §2.2.2, §7")
def untagged(run) -> Outcome:
    files = _out_files(run)
    want = {m["uid"]: m["data"] for m in run.fixture if m["uid"] in expected_uids(run)}
    saved = set(files.values())
    for uid, data in want.items():
        if files.get(f"{uid}.eml") != data and data not in saved:  # (a wrong name: imap.selection)
            return fail("every message saved intact although the server sent unsolicited untagged responses "
                        "(* OK [ALERT], * n EXISTS, * n RECENT) before and between the replies",
                        f"{uid}.eml is " + ("missing" if f"{uid}.eml" not in files else "wrong"),
                        _fetch_for(run, uid))
    if run.program.exit_code != 0:
        return fail("exit status 0", f"{run.program.status_text()}; stderr: {run.stderr.strip()[:200]!r}",
                    None)
    return ok()
