"""Commands of the selected state (RFC 3501 §6.4), their UID forms (§6.4.8), UIDPLUS and MOVE.

§6.4.8: "the UID command ... takes arguments appropriate for the specified command.  However,
the numbers in the sequence set argument are unique identifiers instead of message sequence
numbers."  UIDPLUS (RFC 4315) adds UID EXPUNGE and the APPENDUID / COPYUID response codes;
MOVE (RFC 6851 §3.3) "first sends an untagged OK [COPYUID] ... then EXPUNGE responses".
"""

from __future__ import annotations

from mailtrace.protocols.imap import bodystructure, fetch, search, sort, thread, wire
from mailtrace.protocols.imap.commands_mailbox import store_error
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.protocols.imap.parser import set_text as uid_set_text
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
    if view.readonly:
        conn.done(cmd, "OK", "CLOSE completed, now in the authenticated state")
        return

    def then(removed) -> None:
        if isinstance(removed, Exception):
            store_error(conn, cmd, removed)
            return
        touch(conn, Action.DELETED, removed)
        conn.done(cmd, "OK", "CLOSE completed, now in the authenticated state")

    # §6.4.2: "permanently removes all messages that have the \Deleted flag set ...
    # No untagged EXPUNGE responses are sent."  (The view closes with the tagged OK.)
    conn.run_slowly(lambda: _remove_deleted(view, None), then)


def unselect(conn, cmd) -> None:
    """RFC 3691 §2: like CLOSE, but "no messages are permanently removed"."""
    cmd.args.end()
    conn.done(cmd, "OK", "UNSELECT completed, now in the authenticated state")


def _current_flags(view, uid: int) -> frozenset:
    try:
        return frozenset(view.box.get(uid).flags)
    except KeyError:
        return frozenset()


def _remove_deleted(view, only: set[int] | None) -> list[int] | Exception:
    """A store job (worker thread: fsyncs, the uidlist lock): remove the messages of the view
    flagged \\Deleted (only those in ``only``, if given) and return their UIDs."""
    try:
        view.box.refresh()
        doomed = [u for u in view.uids if "\\Deleted" in _current_flags(view, u) and (only is None or u in only)]
        return view.box.expunge(doomed) if doomed else []
    except (StoreError, OSError) as exc:
        return exc


def _report_removed(conn, removed: list[int]) -> None:
    view = conn.view
    recent = len(view.recent)
    conn.report_expunged([(seq, uid) for uid in sorted(removed, reverse=True) if (seq := view.forget(uid))])
    touch(conn, Action.DELETED, removed)
    if len(view.recent) != recent:  # the new count, as Dovecot sends it (RFC 3501 §7.3.2)
        conn.untagged(b"%d RECENT" % len(view.recent), "RECENT")


def expunge(conn, cmd) -> None:
    only = None
    if cmd.uid:
        seqset = cmd.args.seqset("UID set")
        only = {u for _, u in conn.view.resolve(seqset, uid=True)}
    cmd.args.end()
    if conn.view.readonly:
        conn.done(cmd, "NO", "the mailbox is read-only (EXAMINE)", code="READ-ONLY")
        return
    view = conn.view

    def then(removed) -> None:
        if isinstance(removed, Exception):
            store_error(conn, cmd, removed)
            return
        _report_removed(conn, removed)
        conn.done(cmd, "OK", f"{cmd.name} completed")

    conn.run_slowly(lambda: _remove_deleted(view, only), then)


def in_store_job(conn, cmd, work, then) -> None:
    """Run ``work()`` (it reads message files, under the folder lock) as a store job, then
    ``then(its result)``; a failure is one NO [SERVERBUG] (RFC 5530 §3), never a lost session."""
    def job():
        try:
            return work(), None
        except (OSError, ValueError, LookupError, StoreError) as exc:
            return None, exc

    def resume(result) -> None:
        value, exc = result
        if exc is not None:
            conn.done(cmd, "NO", f"{cmd.name} failed: {wire.failure(exc)}", code="SERVERBUG")
        else:
            then(value)

    conn.run_slowly(job, resume)


def matching(view, node) -> list[tuple[int, fetch.MessageData]]:
    """(sequence number, message) of every message of the view that matches search ``node``
    (SEARCH, and the search part of SORT and THREAD, RFC 5256 §3)."""
    with_modseq = search.uses_modseq(node)
    hits = []
    max_uid = view.uids[-1] if view.uids else 0
    for i, uid in enumerate(view.uids):
        try:
            info = view.box.get(uid)
        except KeyError:
            continue
        msg = fetch.MessageData(info, lambda u=uid: view.box.read(u))
        msg.modseq = view.box.modseq(uid) if with_modseq else 0
        cand = search.Candidate(i + 1, msg, frozenset(info.flags), uid in view.recent, len(view.uids), max_uid,
                                msg.modseq)
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
    view = conn.view
    in_store_job(conn, cmd, lambda: matching(view, node), lambda found: _searched(conn, cmd, options, node, found))


def _searched(conn, cmd, options, node, found) -> None:
    hits = [msg.info.uid if cmd.uid else seq for seq, msg in found]
    modseq = max((msg.modseq for _, msg in found), default=0)
    if found and options is not None and set(options) <= {"MIN", "MAX"}:
        # RFC 4731 §3.2: with MIN and/or MAX only, the mod-sequence of the message(s) returned
        shown = ([found[0]] if "MIN" in options else []) + ([found[-1]] if "MAX" in options else [])
        modseq = max(msg.modseq for _, msg in shown)
    if search.uses_modseq(node):
        condstore_on(conn)  # RFC 7162 §3.1: SEARCH MODSEQ is a CONDSTORE enabling command
    if options is None:
        # RFC 7162 §3.1.5: "append ... the highest mod-sequence for all messages being returned"
        tail = b" (MODSEQ %d)" % modseq if modseq and hits else b""
        conn.untagged(b"SEARCH" + b"".join(b" %d" % h for h in hits) + tail, "SEARCH")
    else:
        conn.untagged(search.esearch_response(cmd.tag, cmd.uid, hits, options, modseq), "ESEARCH")
    conn.done(cmd, "OK", f"{cmd.name} completed")


def _modifiers(cmd, name: str) -> int | None:
    """RFC 4466 §2.4/§2.5 modifiers "(" NAME n ")": CHANGEDSINCE (FETCH) or UNCHANGEDSINCE
    (STORE) of RFC 7162 §3.1.3, §3.1.4.1; None when absent."""
    tok = cmd.args.peek()
    if tok is None or tok.kind is not T.LPAREN:
        return None
    cmd.args.open_paren(f"{name} modifier")
    word = cmd.args.atom(f"{name} modifier").upper()
    if word != name:
        raise ParseError(f'unknown modifier "{word}" (only {name}, RFC 7162)')
    value = cmd.args.atom("mod-sequence")
    if not value.isdigit() or (name == "CHANGEDSINCE" and int(value) == 0):
        raise ParseError(f'bad mod-sequence "{value}" after {name}')
    if not cmd.args.close_paren_if_next():
        raise ParseError(f'missing ")" after {name}')
    return int(value)


def _fetch_modifiers(cmd, conn) -> tuple[int | None, bool]:
    """FETCH modifiers (RFC 4466 §2.4): (CHANGEDSINCE n [VANISHED]) of RFC 7162 §3.1.4.1, §3.2.6."""
    since, vanished = None, False
    if not cmd.args.paren_if_next():
        return None, False
    while not cmd.args.close_paren_if_next():
        word = cmd.args.atom("FETCH modifier").upper()
        if word == "CHANGEDSINCE":
            value = cmd.args.atom("mod-sequence")
            if not value.isdigit() or int(value) == 0:
                raise ParseError(f'bad mod-sequence "{value}" after CHANGEDSINCE')
            since = int(value)
        elif word == "VANISHED":
            # §3.2.6: BAD with FETCH, without ENABLE QRESYNC, or without CHANGEDSINCE
            if not cmd.uid or not conn.qresync:
                raise ParseError("VANISHED is a UID FETCH modifier, after ENABLE QRESYNC (RFC 7162 §3.2.6)")
            vanished = True
        else:
            raise ParseError(f'unknown FETCH modifier "{word}" (CHANGEDSINCE, VANISHED)')
    if vanished and since is None:
        raise ParseError("VANISHED needs CHANGEDSINCE (RFC 7162 §3.2.6)")
    return since, vanished


def vanished_earlier(conn, view, since: int, wanted) -> None:
    """"* VANISHED (EARLIER) uids": the UIDs of ``wanted(uid)`` expunged after mod-sequence
    ``since`` (RFC 7162 §3.2.10.1); when that is older than the store remembers, every UID that
    is not in the mailbox (§3.2.6: "as if it was requested to report all expunged messages")."""
    gone = view.box.vanished_since(since)
    if gone is None:
        present = set(view.uids)
        gone = [uid for uid in range(1, view.box.uidnext) if uid not in present]
    gone = [uid for uid in gone if wanted(uid)]
    if gone:
        conn.untagged(b"VANISHED (EARLIER) " + uid_set_text(gone).encode(), "VANISHED")


#: Not from the RFC: a FETCH of many messages is read and rendered by store jobs of about this
#: many octets each, every part sent before the next is read, so a session holds one part in
#: memory, not its whole answer (100 clients fetching 1 MB mailboxes: 100 MB).
FETCH_JOB_OCTETS = 256 * 1024


def do_fetch(conn, cmd) -> None:
    seqset = cmd.args.seqset()
    items = fetch.parse_items(cmd.args)
    since, vanished = _fetch_modifiers(cmd, conn)
    cmd.args.end()
    view = conn.view
    pairs = view.resolve(seqset, cmd.uid)
    if vanished:  # §3.2.6: "MUST be returned before any FETCH responses"
        largest = max(view.box.uidnext - 1, 1)
        vanished_earlier(conn, view, since, lambda uid: seqset.contains(uid, largest))
    if since is not None or any(i.name == "MODSEQ" for i in items):
        condstore_on(conn)  # RFC 7162 §3.1: both are CONDSTORE enabling commands
    if since is not None and not any(i.name == "MODSEQ" for i in items):
        items = items + [fetch.SIMPLE_ITEMS["MODSEQ"]()]  # §3.1.4.1: with their MODSEQ
    sets_seen = not view.readonly and any(i.sets_seen for i in items)
    reads = any(i.needs_body for i in items)
    wants_flags = any(i.name == "FLAGS" for i in items)
    condstore = conn.condstore

    def job(start: int):  # in a worker thread: message files read, \Seen set (a rename), under the folder lock
        rows, octets, end = [], 0, start
        for seq, uid in pairs[start:]:
            if octets >= FETCH_JOB_OCTETS:
                break  # the rest in the next job, once these are sent
            end += 1
            try:
                if since is not None and view.box.modseq(uid) <= since:
                    continue  # §3.1.4.1: only messages changed since
                info = view.box.get(uid)
                if sets_seen and "\\Seen" not in info.flags:
                    info = view.box.change_flags(uid, add={"\\Seen"})
                    row = items if wants_flags else items + [fetch.SIMPLE_ITEMS["FLAGS"]()]
                    if condstore and not any(i.name == "MODSEQ" for i in row):
                        row = row + [fetch.SIMPLE_ITEMS["MODSEQ"]()]  # §3.2: flag changes carry MODSEQ
                else:
                    row = items
                msg = fetch.MessageData(info, lambda u=uid: view.box.read(u))
                msg.modseq = view.box.modseq(uid)
                pieces = fetch.render(seq, msg, row, info.flags, uid in view.recent, add_uid=cmd.uid)
                octets += sum(len(piece) for _, piece in pieces)
                rows.append((uid, info, pieces))
            except (KeyError, FileNotFoundError):
                continue  # expunged by another session; reported at the next allowed moment
            except bodystructure.UnknownCte as exc:  # RFC 3516 §4.3
                return rows, ("UNKNOWN-CTE", f'cannot decode the Content-Transfer-Encoding "{exc}" of message {seq}'), end
            except (OSError, ValueError, LookupError, StoreError) as exc:  # an odd file: one NO, never a lost session
                return rows, ("SERVERBUG", f"{cmd.name} failed: {wire.failure(exc)}"), end
        return rows, None, end

    def then(result) -> None:
        rows, failed, end = result
        for uid, info, data in rows:
            view.announce_keywords(conn, info.flags)
            view.flags[uid] = frozenset(info.flags)
            conn.respond_pieces(data, tag="*", verb="FETCH")
        if reads:  # (told with the tagged reply, in this order)
            touch(conn, Action.READ, [uid for uid, _, _ in rows])
        if failed is not None:
            conn.done(cmd, "NO", failed[1], code=failed[0])
        elif end < len(pairs):
            conn.run_slowly(lambda: job(end), then)
        else:
            conn.done(cmd, "OK", f"{cmd.name} completed")

    conn.run_slowly(lambda: job(0), then)


def do_store(conn, cmd) -> None:
    seqset = cmd.args.seqset()
    unchanged_since = _modifiers(cmd, "UNCHANGEDSINCE")
    if unchanged_since is not None:
        condstore_on(conn)
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
    condstore = conn.condstore

    def job():  # in a worker thread: the flags are in the file names (renames, under the folder lock)
        changed, modified = [], []
        for seq, uid in pairs:
            try:
                if unchanged_since is not None and view.box.modseq(uid) > unchanged_since:
                    modified.append(uid if cmd.uid else seq)  # RFC 7162 §3.1.3: "MUST NOT be performed"
                    continue
                old = view.box.get(uid).flags
                if mode == "replace":
                    info = view.box.set_flags(uid, flags)
                else:  # a read-modify-write of the flags as they are now, under the store's lock
                    info = view.box.change_flags(uid, add=flags if mode == "add" else (),
                                                 remove=flags if mode == "remove" else ())
            except KeyError:
                continue
            except (OSError, ValueError, LookupError, StoreError) as exc:
                return changed, modified, exc
            changed.append((seq, uid, old, info, view.box.modseq(uid) if condstore else 0))
        return changed, modified, None

    conn.run_slowly(job, lambda result: _stored(conn, cmd, silent, unchanged_since, *result))


def _stored(conn, cmd, silent: bool, unchanged_since, changed, modified, failed) -> None:
    """STORE done in the store: the untagged FETCH of the new flags (RFC 3501 §6.4.6)."""
    view = conn.view
    for seq, uid, old, info, modseq_value in changed:
        if info.flags != old:
            touch(conn, Action.FLAGGED, [uid])
        view.announce_keywords(conn, info.flags)
        view.flags[uid] = frozenset(info.flags)
        uid_part = b"UID %d " % uid if cmd.uid else b""
        modseq = b" MODSEQ (%d)" % modseq_value if conn.condstore else b""
        if not silent:
            conn.untagged(b"%d FETCH (%sFLAGS %s%s)" % (seq, uid_part, fetch.flag_list(
                fetch.all_flags(info.flags, uid in view.recent)), modseq), "FETCH")
        elif unchanged_since is not None:  # §3.1.3: "MUST be sent, even if the .SILENT suffix"
            conn.untagged(b"%d FETCH (%s%s)" % (seq, uid_part, modseq[1:]), "FETCH")
    if failed is not None:
        conn.done(cmd, "NO", f"{cmd.name} failed: {wire.failure(failed)}", code="SERVERBUG")
    elif modified:
        conn.done(cmd, "OK", "conditional STORE failed for some messages", code=f"MODIFIED {uid_set_text(modified)}")
    else:
        conn.done(cmd, "OK", f"{cmd.name} completed")


def condstore_on(conn) -> None:
    """A CONDSTORE enabling command (RFC 7162 §3.1): from now on flag changes carry MODSEQ; the
    first one in a selected mailbox also tells its HIGHESTMODSEQ (§3.1.2.1, Example 5)."""
    if not conn.condstore:
        conn.condstore = True
        if conn.view is not None:
            conn.untagged_status("OK", "highest mod-sequence", code=f"HIGHESTMODSEQ {conn.view.box.highest_modseq()}")


def _copy(conn, cmd, move: bool) -> None:
    seqset = cmd.args.seqset()
    name = cmd.args.mailbox()
    cmd.args.end()
    view = conn.view
    pairs = view.resolve(seqset, cmd.uid)
    if move and view.readonly:
        conn.done(cmd, "NO", "the mailbox is read-only (EXAMINE)", code="READ-ONLY")
        return
    uids = [u for _, u in pairs]
    user = conn.user

    def job():  # in a worker thread: the copies are fsync'd, the uidlist locked
        try:
            dest = conn.store.mailbox(user, name)
            mapping = view.box.copy(uids, dest) if uids else []
        except (StoreError, KeyError, OSError) as exc:
            return exc, None
        if not move or not mapping:
            return (dest, mapping), []
        try:
            return (dest, mapping), view.box.expunge([a for a, _ in mapping])
        except (StoreError, OSError) as exc:
            return (dest, mapping), exc

    def then(result) -> None:
        copied, removed = result
        if isinstance(copied, Exception):
            # §6.4.7: "If the destination mailbox does not exist, a server SHOULD return an error
            # ... prefixed with the "[TRYCREATE]" response code"
            store_error(conn, cmd, copied, trycreate=True)
            return
        _copied(conn, cmd, move, *copied, removed)

    conn.run_slowly(job, then)


def _copied(conn, cmd, move: bool, dest, mapping, removed) -> None:
    """COPY / MOVE done in the store: tell the client (RFC 4315 §3 COPYUID, RFC 6851 §3.3)."""
    view = conn.view
    code = ""
    if mapping:
        code = f"COPYUID {dest.uidvalidity} {uid_set_text([a for a, _ in mapping])} {uid_set_text([b for _, b in mapping])}"
    touch(conn, Action.MOVED if move else Action.COPIED, [a for a, _ in mapping])
    touch(conn, Action.ARRIVED, [b for _, b in mapping], dest.name)
    if move:
        if code:
            conn.untagged_status("OK", "moved", code=code)
        if isinstance(removed, Exception):
            store_error(conn, cmd, removed)
            return
        conn.report_expunged([(seq, uid) for uid in sorted(removed, reverse=True) if (seq := view.forget(uid))])
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
    view = conn.view

    def sorted_numbers() -> list[int]:  # (reads the messages' headers)
        return [msg.info.uid if cmd.uid else seq for seq, msg in sort.sort(matching(view, node), criteria)]

    def then(numbers: list[int]) -> None:
        conn.untagged(b"SORT" + b"".join(b" %d" % n for n in numbers), "SORT")
        conn.done(cmd, "OK", f"{cmd.name} completed")

    in_store_job(conn, cmd, sorted_numbers, then)


def do_thread(conn, cmd) -> None:
    """THREAD / UID THREAD (RFC 5256 §3): search, then group into conversations."""
    algorithm = cmd.args.atom("threading algorithm").upper()
    if algorithm not in thread.ALGORITHMS:
        raise ParseError(f'unknown threading algorithm "{algorithm}" (one of {", ".join(thread.ALGORITHMS)})')
    _charset(cmd)
    node = search.parse(cmd.args)
    view = conn.view

    def threaded() -> bytes:  # (reads the messages' headers)
        hits = matching(view, node)
        threads = thread.references(hits) if algorithm == "REFERENCES" else thread.ordered_subject(hits)
        uid_of = {seq: msg.info.uid for seq, msg in hits}
        return thread.render(threads, (lambda seq: uid_of[seq]) if cmd.uid else (lambda seq: seq))

    def then(data: bytes) -> None:
        conn.untagged(b"THREAD" + (b" " + data if data else b""), "THREAD")
        conn.done(cmd, "OK", f"{cmd.name} completed")

    in_store_job(conn, cmd, threaded, then)
