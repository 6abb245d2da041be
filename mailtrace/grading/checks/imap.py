"""IMAP client checks (exercise imap-client): tags, literals, quoting, flags, errors."""

from __future__ import annotations

from mailtrace.grading.checks import Outcome, check, ok, phrase, said
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


@check("imap.unique-tags", "RFC 3501 §2.2.1")
def unique_tags(run) -> Outcome:
    if len(run.commands()) < 2:
        return said(run, "imap.unique-tags.few")
    for sid in run.sessions():
        seen: dict[str, Event] = {}
        for e in run.commands():
            if e.session != sid or not e.tag:
                continue
            if e.tag in seen:
                return said(run, "imap.unique-tags.reused", e, "RFC 3501 §2.2.1", tag=e.tag,
                            other=seen[e.tag].text()[:60])
            seen[e.tag] = e
    return ok()


@check("imap.literals", "ref.literals")
def literals(run) -> Outcome | None:
    if out_of_step(run):
        return stepped(run)  # it read part of a response as a whole one: imap.whole-reply's business
    files = _out_files(run)
    if not files and expected_uids(run):
        return said(run, "imap.literals.none")
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
            return said(run, "imap.literals.crlf", _fetch_for(run, uid), name=name)
        i = next((k for k, (a, b) in enumerate(zip(got, m["data"])) if a != b), min(len(got), len(m["data"])))
        return said(run, "imap.literals.differs", _fetch_for(run, uid), name=name, size=len(m["data"]),
                    got_size=len(got), at=i, got=got[max(0, i - 10):i + 20], want=m["data"][max(0, i - 10):i + 20])
    return ok()


@check("imap.selection", "RFC 3501 §6.4.4 (SEARCH)")
def selection(run) -> Outcome:
    files = _out_files(run)
    want = {f"{u}.eml" for u in expected_uids(run)}
    got = set(files)
    if want != got:
        missing, extra = sorted(want - got), sorted(got - want)
        happened = "; ".join(x for x in (phrase(run, "check.imap.selection.missing", names=", ".join(missing))
                                         if missing else "",
                                         phrase(run, "check.imap.selection.unexpected", names=", ".join(extra))
                                         if extra else "") if x)
        search = [e for e in run.commands() if "SEARCH" in e.text().upper()]
        return said(run, "imap.selection.files", search[-1] if search else None,
                    "RFC 3501 §2.3.1.1 (UIDs), §6.4.8 (UID)", want=", ".join(sorted(want)) or "-", what=happened)
    return ok()


@check("imap.quoting", "ref.strings")
def quoting(run) -> Outcome:
    for e in run.commands():
        if e.verb.upper() in ("LOGIN", "SELECT", "EXAMINE"):
            reply = _tagged(run, e)
            if reply is not None and reply.code in ("NO", "BAD"):
                return said(run, "imap.quoting.refused", e, "RFC 3501 §4.3, §9 (astring)", verb=e.verb,
                            reply=reply.text()[:100])
    if not run.commands("LOGIN") and not run.commands("AUTHENTICATE"):
        return said(run, "imap.quoting.no-login")
    return ok()


@check("imap.stops-after-error", "RFC 3501 §7.1")
def stops_after_error(run) -> Outcome:
    if not run.commands():
        return said(run, "imap.stops-after-error.nothing")
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
            return said(run, "imap.stops-after-error.went-on", later[0], code=reply.code, verb=e.verb,
                        next=later[0].verb, reply=reply.text()[:80])
    return ok()


@check("imap.flags", "RFC 3501 §6.4.5, §6.4.6")
def flags(run) -> Outcome:
    mark = "--mark-seen" in run.variables.get("argv", [])
    after = {m["uid"]: m for m in run.store_after.get("messages", [])}
    if expected_uids(run) and not any("FETCH" in e.verb.upper() for e in run.commands()):
        return said(run, "imap.flags.nothing")
    for m in run.fixture:
        if m["mailbox"] != run.variables.get("arg_mailbox", "INBOX"):
            continue
        now = after.get(m["uid"])
        if now is None:
            continue
        fetched = m["uid"] in expected_uids(run)
        was, is_ = "\\Seen" in m["flags"], "\\Seen" in now["flags"]
        if mark and fetched and not is_:
            return said(run, "imap.flags.not-marked", _fetch_for(run, m["uid"]), uid=m["uid"])
        if mark and not fetched and is_ and not was:
            # STORE with a sequence number where a UID was meant (RFC 3501 §6.4.8: only UID STORE
            # takes UIDs), or a place in the list fetched taken for a sequence number
            store = next((e for e in run.commands() if "STORE" in e.verb.upper() or "STORE" in e.text().upper()),
                         None)
            return said(run, "imap.flags.wrong-message", store, "RFC 3501 §6.4.6, §6.4.8", uid=m["uid"])
        if not mark and is_ and not was:
            return said(run, "imap.flags.peek", _fetch_for(run, m["uid"]), "RFC 3501 §6.4.5 (BODY.PEEK)", uid=m["uid"])
    return ok()


@check("imap.untagged", "RFC 3501 §2.2.2, §7")
def untagged(run) -> Outcome:
    files = _out_files(run)
    want = {m["uid"]: m["data"] for m in run.fixture if m["uid"] in expected_uids(run)}
    saved = set(files.values())
    for uid, data in want.items():
        if files.get(f"{uid}.eml") != data and data not in saved:  # (a wrong name: imap.selection)
            return said(run, "imap.untagged.missing" if f"{uid}.eml" not in files else "imap.untagged.wrong",
                        _fetch_for(run, uid), name=f"{uid}.eml")
    if run.program.exit_code != 0:
        return said(run, "imap.untagged.exit", status=run.program.status_text(run.lang),
                    stderr=run.stderr.strip()[:200])
    return ok()
