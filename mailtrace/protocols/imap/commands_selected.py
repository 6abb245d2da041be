"""Commands of the selected state (RFC 3501 §6.4), their UID forms (§6.4.8), UIDPLUS and MOVE.

§6.4.8: "the UID command ... takes arguments appropriate for the specified command.  However,
the numbers in the sequence set argument are unique identifiers instead of message sequence
numbers."  UIDPLUS (RFC 4315) adds UID EXPUNGE and the APPENDUID / COPYUID response codes;
MOVE (RFC 6851 §3.3) "first sends an untagged OK [COPYUID] ... then EXPUNGE responses".
"""

from __future__ import annotations

from mailtrace.protocols.imap import bodystructure, fetch, search, sort, thread
from mailtrace.protocols.imap.commands_mailbox import store_error
from mailtrace.protocols.imap.lexer import ParseError
from mailtrace.protocols.imap.parser import set_text as uid_set_text
from mailtrace.protocols.imap.states import State
from mailtrace.store.model import StoreError
from mailtrace.transcript.links import Action, MessageRef

STORE_MODES = {"FLAGS": "replace", "+FLAGS": "add", "-FLAGS": "remove"}


def touch(conn, action: Action, uids, mailbox: str | None = None) -> None:
    """Say which stored messages the command read or changed (``transcript.links``)."""
    name = mailbox if mailbox is not None else conn.view.box.name
    conn.touched.extend(MessageRef(action, conn.user or "", name, uid) for uid in uids)


def check(conn, cmd) -> None:
    cmd.args.end()
    conn.done(cmd, "OK", "CHECK completed")


def close(conn, cmd) -> None:
    cmd.args.end()
    view = conn.view
    if not view.readonly:
        # §6.4.2: "permanently removes all messages that have the \Deleted flag set ...
        # No untagged EXPUNGE responses are sent."
        view.box.refresh()
        doomed = [u for u in view.uids if _current_flags(view, u) and "\\Deleted" in _current_flags(view, u)]
        if doomed:
            try:
                touch(conn, Action.DELETED, view.box.expunge(doomed))
            except StoreError as exc:
                store_error(conn, cmd, exc)
                return
    view.release()
    conn.view = None
    conn.set_state(State.AUTHENTICATED)
    conn.done(cmd, "OK", "CLOSE completed, now in the authenticated state")


def unselect(conn, cmd) -> None:
    """RFC 3691 §2: like CLOSE, but "no messages are permanently removed"."""
    cmd.args.end()
    conn.view.release()
    conn.view = None
    conn.set_state(State.AUTHENTICATED)
    conn.done(cmd, "OK", "UNSELECT completed, now in the authenticated state")


def _current_flags(view, uid: int) -> frozenset:
    try:
        return frozenset(view.box.get(uid).flags)
    except KeyError:
        return frozenset()


def _expunge(conn, cmd, only: set[int] | None) -> list[int]:
    view = conn.view
    view.box.refresh()
    doomed = [u for u in view.uids if "\\Deleted" in _current_flags(view, u) and (only is None or u in only)]
    removed = view.box.expunge(doomed) if doomed else []
    recent = len(view.recent)
    for uid in sorted(removed, reverse=True):
        seq = view.forget(uid)
        if seq:
            conn.untagged(b"%d EXPUNGE" % seq, "EXPUNGE")
    touch(conn, Action.DELETED, removed)
    if len(view.recent) != recent:  # the new count, as Dovecot sends it (RFC 3501 §7.3.2)
        conn.untagged(b"%d RECENT" % len(view.recent), "RECENT")
    return removed


def expunge(conn, cmd) -> None:
    only = None
    if cmd.uid:
        seqset = cmd.args.seqset("UID set")
        only = {u for _, u in conn.view.resolve(seqset, uid=True)}
    cmd.args.end()
    if conn.view.readonly:
        conn.done(cmd, "NO", "the mailbox is read-only (EXAMINE)", code="READ-ONLY")
        return
    try:
        _expunge(conn, cmd, only)
    except StoreError as exc:
        store_error(conn, cmd, exc)
        return
    conn.done(cmd, "OK", f"{cmd.name} completed")


def matching(view, node) -> list[tuple[int, fetch.MessageData]]:
    """(sequence number, message) of every message of the view that matches search ``node``
    (SEARCH, and the search part of SORT and THREAD, RFC 5256 §3)."""
    hits = []
    max_uid = view.uids[-1] if view.uids else 0
    for i, uid in enumerate(view.uids):
        try:
            info = view.box.get(uid)
        except KeyError:
            continue
        msg = fetch.MessageData(info, lambda u=uid: view.box.read(u))
        cand = search.Candidate(i + 1, msg, frozenset(info.flags), uid in view.recent, len(view.uids), max_uid)
        try:
            ok = search.matches(node, cand)
        except (KeyError, OSError):
            continue
        if ok:
            hits.append((i + 1, msg))
    return hits


def do_search(conn, cmd) -> None:
    options = search.parse_return(cmd.args)
    if conn.utf8 and cmd.args.peek_atom() == "CHARSET":
        # RFC 6855 §3: after ENABLE UTF8=ACCEPT a client "MUST NOT issue a "SEARCH" command
        # that contains a charset specification ... SHOULD reject the command with a "BAD""
        raise ParseError("no CHARSET after ENABLE UTF8=ACCEPT: strings are UTF-8 (RFC 6855 §3)")
    node = search.parse(cmd.args)
    hits = [msg.info.uid if cmd.uid else seq for seq, msg in matching(conn.view, node)]
    if options is None:
        conn.untagged(b"SEARCH" + b"".join(b" %d" % h for h in hits), "SEARCH")
    else:
        conn.untagged(search.esearch_response(cmd.tag, cmd.uid, hits, options), "ESEARCH")
    conn.done(cmd, "OK", f"{cmd.name} completed")


def do_fetch(conn, cmd) -> None:
    seqset = cmd.args.seqset()
    items = fetch.parse_items(cmd.args)
    cmd.args.end()
    view = conn.view
    pairs = view.resolve(seqset, cmd.uid)
    sets_seen = not view.readonly and any(i.sets_seen for i in items)
    reads = any(i.needs_body for i in items)
    wants_flags = any(i.name == "FLAGS" for i in items)
    for seq, uid in pairs:
        try:
            info = view.box.get(uid)
            if sets_seen and "\\Seen" not in info.flags:
                info = view.box.change_flags(uid, add={"\\Seen"})
                row = items if wants_flags else items + [fetch.SIMPLE_ITEMS["FLAGS"]()]
            else:
                row = items
            msg = fetch.MessageData(info, lambda u=uid: view.box.read(u))
            data = fetch.render(seq, msg, row, info.flags, uid in view.recent, add_uid=cmd.uid)
        except (KeyError, FileNotFoundError):
            continue  # expunged by another session; reported at the next allowed moment
        except bodystructure.UnknownCte as exc:  # RFC 3516 §4.3
            conn.done(cmd, "NO", f'cannot decode the Content-Transfer-Encoding "{exc}" of message {seq}',
                      code="UNKNOWN-CTE")
            return
        view.announce_keywords(conn, info.flags)
        view.flags[uid] = frozenset(info.flags)
        conn.respond_pieces(data, tag="*", verb="FETCH")
        if reads:
            touch(conn, Action.READ, [uid])
    conn.done(cmd, "OK", f"{cmd.name} completed")


def do_store(conn, cmd) -> None:
    seqset = cmd.args.seqset()
    item = cmd.args.atom("store data item (FLAGS, +FLAGS or -FLAGS)").upper()
    silent = item.endswith(".SILENT")
    mode = STORE_MODES.get(item.removesuffix(".SILENT"))
    if mode is None:
        raise ParseError(f'unknown store data item "{item}" (FLAGS, +FLAGS, -FLAGS, with optional .SILENT)')
    flags = set(cmd.args.flag_list(allow_bare=True))
    cmd.args.end()
    view = conn.view
    pairs = view.resolve(seqset, cmd.uid)
    if view.readonly:
        conn.done(cmd, "NO", "the mailbox is read-only (EXAMINE)", code="READ-ONLY")
        return
    for seq, uid in pairs:
        try:
            old = view.box.get(uid).flags
            if mode == "replace":
                info = view.box.set_flags(uid, flags)
            else:  # a read-modify-write of the flags as they are now, under the store's lock
                info = view.box.change_flags(uid, add=flags if mode == "add" else (),
                                             remove=flags if mode == "remove" else ())
        except KeyError:
            continue
        if info.flags != old:
            touch(conn, Action.FLAGGED, [uid])
        view.announce_keywords(conn, info.flags)
        view.flags[uid] = frozenset(info.flags)
        if not silent:
            uid_part = b"UID %d " % uid if cmd.uid else b""
            conn.untagged(b"%d FETCH (%sFLAGS %s)" % (seq, uid_part, fetch.flag_list(
                fetch.all_flags(info.flags, uid in view.recent))), "FETCH")
    conn.done(cmd, "OK", f"{cmd.name} completed")


def _copy(conn, cmd, move: bool) -> None:
    seqset = cmd.args.seqset()
    name = cmd.args.mailbox()
    cmd.args.end()
    view = conn.view
    pairs = view.resolve(seqset, cmd.uid)
    if move and view.readonly:
        conn.done(cmd, "NO", "the mailbox is read-only (EXAMINE)", code="READ-ONLY")
        return
    try:
        dest = conn.store.mailbox(conn.user, name)
        mapping = view.box.copy([u for _, u in pairs], dest) if pairs else []
    except (StoreError, KeyError) as exc:
        # §6.4.7: "If the destination mailbox does not exist, a server SHOULD return an error
        # ... prefixed with the "[TRYCREATE]" response code"
        store_error(conn, cmd, exc, trycreate=True)
        return
    code = ""
    if mapping:
        code = f"COPYUID {dest.uidvalidity} {uid_set_text([a for a, _ in mapping])} {uid_set_text([b for _, b in mapping])}"
    touch(conn, Action.MOVED if move else Action.COPIED, [a for a, _ in mapping])
    touch(conn, Action.ARRIVED, [b for _, b in mapping], dest.name)
    if move:
        if code:
            conn.untagged_status("OK", "moved", code=code)
        try:
            removed = view.box.expunge([a for a, _ in mapping])
        except StoreError as exc:
            store_error(conn, cmd, exc)
            return
        for uid in sorted(removed, reverse=True):
            seq = view.forget(uid)
            if seq:
                conn.untagged(b"%d EXPUNGE" % seq, "EXPUNGE")
        conn.done(cmd, "OK", f"{cmd.name} completed")
    else:
        conn.done(cmd, "OK", f"{cmd.name} completed", code=code)


def copy(conn, cmd) -> None:
    _copy(conn, cmd, move=False)


def move(conn, cmd) -> None:
    _copy(conn, cmd, move=True)


def _charset(cmd) -> None:
    """RFC 5256 §3: "The charset argument is mandatory (unlike SEARCH) ... The US-ASCII and
    [UTF-8] charsets MUST be implemented."""
    charset = cmd.args.astring("charset").decode("ascii", "replace").upper()
    if charset not in search.CHARSETS:
        raise search.BadCharset(charset)


def do_sort(conn, cmd) -> None:
    """SORT / UID SORT (RFC 5256 §3): search, then order by the sort criteria."""
    criteria = sort.parse_criteria(cmd.args)
    _charset(cmd)
    node = search.parse(cmd.args)
    ordered = sort.sort(matching(conn.view, node), criteria)
    numbers = [msg.info.uid if cmd.uid else seq for seq, msg in ordered]
    conn.untagged(b"SORT" + b"".join(b" %d" % n for n in numbers), "SORT")
    conn.done(cmd, "OK", f"{cmd.name} completed")


def do_thread(conn, cmd) -> None:
    """THREAD / UID THREAD (RFC 5256 §3): search, then group into conversations."""
    algorithm = cmd.args.atom("threading algorithm").upper()
    if algorithm not in thread.ALGORITHMS:
        raise ParseError(f'unknown threading algorithm "{algorithm}" (one of {", ".join(thread.ALGORITHMS)})')
    _charset(cmd)
    node = search.parse(cmd.args)
    hits = matching(conn.view, node)
    threads = thread.references(hits) if algorithm == "REFERENCES" else thread.ordered_subject(hits)
    uid_of = {seq: msg.info.uid for seq, msg in hits}
    data = thread.render(threads, (lambda seq: uid_of[seq]) if cmd.uid else (lambda seq: seq))
    conn.untagged(b"THREAD" + (b" " + data if data else b""), "THREAD")
    conn.done(cmd, "OK", f"{cmd.name} completed")
