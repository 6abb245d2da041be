"""Commands of the authenticated state (RFC 3501 §6.3): mailboxes as a whole, and APPEND.

SELECT/EXAMINE (§6.3.1, §6.3.2) open a mailbox: "The server MUST send the following responses:
FLAGS, EXISTS, RECENT ... OK [UIDVALIDITY], OK [UIDNEXT] ... OK [PERMANENTFLAGS]" and move the
connection to the selected state; "If the client is permitted to modify the mailbox, the
server SHOULD prefix the text of the tagged OK response with the "[READ-WRITE]" response
code."  A failed SELECT leaves the connection in the authenticated state.  Mailboxes live in
the store; its errors become NO responses (never a crash): an unknown mailbox NO [NONEXISTENT]
(or [TRYCREATE] for APPEND/COPY, §6.3.11), a bad name ("../../etc") NO [CANNOT].
"""

from __future__ import annotations


from mailtrace.protocols.imap import bodystructure, wire
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.protocols.imap.mailboxview import MailboxView
from mailtrace.protocols.imap.parser import parse_date_time
from mailtrace.protocols.imap.parser import set_text as uid_set_text
from mailtrace.store.model import InvalidMailboxName, MailboxExists, MailboxNotFound, StoreError
from mailtrace.store.names import canonical_mailbox

# Status items (RFC 3501 §6.3.10).
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")  # RFC 7162 §3.1.7


def store_error(conn, cmd, exc: Exception, trycreate: bool = False) -> None:
    """Answer a store error with the right NO (RFC 5530 response codes)."""
    if isinstance(exc, MailboxNotFound):
        conn.done(cmd, "NO", "no such mailbox", code="TRYCREATE" if trycreate else "NONEXISTENT")
    elif isinstance(exc, MailboxExists):
        conn.done(cmd, "NO", "the mailbox already exists", code="ALREADYEXISTS")
    elif isinstance(exc, InvalidMailboxName):
        conn.done(cmd, "NO", f"invalid mailbox name: {exc}", code="CANNOT")
    else:  # RFC 5530 §3: SERVERBUG, "the server encountered a bug in itself or violated a limit"
        conn.done(cmd, "NO", f"{cmd.name} failed: {wire.failure(exc)}", code="SERVERBUG")



def _open(conn, cmd, readonly: bool) -> None:
    name = cmd.args.mailbox()
    qresync = _select_params(conn, cmd)
    cmd.args.end()
    if conn.view is not None:
        conn.view.release()
        conn.view = None
        # RFC 7162 §3.2.11: a server that advertises CONDSTORE "must return the CLOSED response
        # code" when SELECT/EXAMINE closes the mailbox selected before: the boundary between the
        # responses of the old mailbox and those of the new one
        conn.untagged_status("OK", "previous mailbox closed", code="CLOSED")
    store, user = conn.store, conn.user

    def job():  # in a worker thread: the first look at the mailbox may wait for the uidlist lock
        try:
            box = store.mailbox(user, name)
            return box, MailboxView(box, readonly)
        except (StoreError, KeyError, OSError) as exc:
            return exc, None

    def then(result) -> None:
        box, view = result
        if view is None:
            store_error(conn, cmd, box)
            return
        view.unwatch = conn.watch(user, box.name)
        _opened(conn, cmd, box, view, readonly, qresync)

    conn.run_slowly(job, then)


def _opened(conn, cmd, box, view: MailboxView, readonly: bool, qresync) -> None:
    """The mailbox is open: the responses SELECT / EXAMINE must send (RFC 3501 §6.3.1)."""
    view.send_flags(conn, permanent=False)
    conn.untagged(b"%d EXISTS" % view.exists, "EXISTS")
    conn.untagged(b"%d RECENT" % len(view.recent), "RECENT")
    unseen = next((i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.flags[u]), 0)
    if unseen:
        conn.untagged_status("OK", f"first unseen is message {unseen}", code=f"UNSEEN {unseen}")
    conn.untagged_status("OK", "UIDs valid", code=f"UIDVALIDITY {box.uidvalidity}")
    conn.untagged_status("OK", "predicted next UID", code=f"UIDNEXT {box.uidnext}")
    view.send_permanent_flags(conn)
    if conn.condstore:  # RFC 7162 §3.1.2.1
        conn.untagged_status("OK", "highest mod-sequence", code=f"HIGHESTMODSEQ {box.highest_modseq()}")
    if qresync is not None and qresync[0] == box.uidvalidity:  # §3.2.5: else "behave as if no ... changed"
        _resync(conn, view, *qresync[1:])
    conn.view = view
    conn.done(cmd, "OK", f"{cmd.name} completed", code="READ-ONLY" if readonly else "READ-WRITE")


def _select_params(conn, cmd):
    """RFC 4466 §2.1 select parameters: CONDSTORE (RFC 7162 §3.1.8) and QRESYNC (uidvalidity
    modseq [known-uids [(seq-match)]]) (§3.2.5); returns the QRESYNC arguments or None."""
    qresync = None
    if not cmd.args.paren_if_next():
        return None
    while not cmd.args.close_paren_if_next():
        word = cmd.args.atom("select parameter").upper()
        if word == "CONDSTORE":
            conn.condstore = True
        elif word == "QRESYNC":
            if not conn.qresync:  # §3.2.5: "MUST respond with a tagged BAD response"
                raise ParseError("QRESYNC needs ENABLE QRESYNC first (RFC 7162 §3.2.5)")
            cmd.args.open_paren("QRESYNC parameters")
            validity, modseq = cmd.args.atom("UIDVALIDITY"), cmd.args.atom("mod-sequence")
            if not (validity.isdigit() and modseq.isdigit()):
                raise ParseError("QRESYNC (uidvalidity mod-sequence [known-uids]) takes numbers")
            known = None
            if not cmd.args.close_paren_if_next():
                known = cmd.args.seqset("known UIDs")
                if cmd.args.paren_if_next():  # seq-match-data: optional help we do not need
                    cmd.args.seqset("known sequence set")
                    cmd.args.seqset("known UID set")
                    if not cmd.args.close_paren_if_next():
                        raise ParseError('missing ")" after the sequence match data')
                if not cmd.args.close_paren_if_next():
                    raise ParseError('missing ")" after the QRESYNC parameters')
            qresync = (int(validity), int(modseq), known)
        else:
            raise ParseError(f'unknown select parameter "{word}" (CONDSTORE or QRESYNC)')
    return qresync


def _resync(conn, view, modseq: int, known) -> None:
    """§3.2.5.1: VANISHED (EARLIER) for what was expunged since ``modseq``, then FETCH (UID FLAGS
    MODSEQ) for every message changed since, limited to the known UIDs when given."""
    from mailtrace.protocols.imap.commands_selected import vanished_earlier
    from mailtrace.protocols.imap.fetch import all_flags, flag_list

    largest = max(view.box.uidnext - 1, 1)
    wanted = (lambda uid: True) if known is None else (lambda uid: known.contains(uid, largest))
    vanished_earlier(conn, view, modseq, wanted)
    for i, uid in enumerate(view.uids):
        current = view.box.modseq(uid)
        if current > modseq and wanted(uid):
            conn.untagged(b"%d FETCH (UID %d FLAGS %s MODSEQ (%d))" % (
                i + 1, uid, flag_list(all_flags(view.flags[uid], uid in view.recent)), current), "FETCH")


def select(conn, cmd) -> None:
    _open(conn, cmd, readonly=False)


def examine(conn, cmd) -> None:
    _open(conn, cmd, readonly=True)


# The commands that only name mailboxes and call one store method (RFC 3501 §6.3.3-§6.3.6):
# command -> (how many mailbox names, the store call).
_STORE_CALLS = {
    # §6.3.3: "If the mailbox name is suffixed with the server's hierarchy separator
    # character ..., this is a declaration that the client intends to create mailbox names
    # under this name in the hierarchy."  The separator is dropped and the mailbox created.
    "CREATE": (1, lambda store, user, names: store.create_mailbox(
        user, names[0][:-1] if len(names[0]) > 1 and names[0].endswith(store.HIERARCHY_DELIMITER) else names[0])),
    "DELETE": (1, lambda store, user, names: store.delete_mailbox(user, *names)),
    "RENAME": (2, lambda store, user, names: rename_mailbox(store, user, *names)),
    "SUBSCRIBE": (1, lambda store, user, names: store.subscribe(user, *names)),
}


def rename_mailbox(store, user: str, old: str, new: str) -> None:
    """RFC 3501 §6.3.5: "all hierarchical names under it are renamed as well" -- also when the
    mailbox itself is a \\Noselect parent that DELETE left behind for its inferiors (§6.3.4):
    it has no Maildir of its own, so its inferiors are all there is to rename (as Dovecot does)."""
    try:
        store.rename_mailbox(user, old, new)
        return
    except MailboxNotFound:
        delim = store.HIERARCHY_DELIMITER
        old, new = canonical_mailbox(old), canonical_mailbox(new)
        existing = store.list_mailboxes(user)
        inferiors = sorted(name for name in existing if name.startswith(old + delim))
        if not inferiors:
            raise
    if (new + delim).startswith(old + delim):
        raise InvalidMailboxName(f"cannot rename {old!r} into its own inferior {new!r}")
    if new in existing or any(new + name[len(old):] in existing for name in inferiors):
        raise MailboxExists(f"mailbox {new!r} or one of its inferiors exists")
    tops: list[str] = []  # the store renames a mailbox with its own inferiors
    for name in inferiors:
        if not any(name.startswith(top + delim) for top in tops):
            tops.append(name)
    for name in tops:
        store.rename_mailbox(user, name, new + name[len(old):])


def mailbox_command(conn, cmd) -> None:
    count, call = _STORE_CALLS[cmd.name]
    names = [cmd.args.mailbox("mailbox name" if i == 0 else "new mailbox name") for i in range(count)]
    cmd.args.end()
    store, user = conn.store, conn.user

    def job():  # in a worker thread: directories made, renamed or removed on disk
        try:
            call(store, user, names)
        except (StoreError, OSError) as exc:
            return exc
        return None

    def then(exc) -> None:
        if exc is not None:
            store_error(conn, cmd, exc)
        else:
            conn.done(cmd, "OK", f"{cmd.name} completed")

    conn.run_slowly(job, then)


create = delete = rename = subscribe = mailbox_command


def unsubscribe(conn, cmd) -> None:
    """§6.3.7 removes a name from the subscription list.  Unsubscribing a name that is not
    subscribed answers OK (the result the client wants is already there), as Dovecot does:
    a client cleaning up after LSUB must not stop at its first NO."""
    name = cmd.args.mailbox()
    cmd.args.end()
    store, user = conn.store, conn.user

    def job():  # in a worker thread: the subscriptions file is read and rewritten (fsync'd)
        try:
            store.unsubscribe(user, name)
        except (StoreError, OSError) as exc:
            return exc
        return None

    def then(failed) -> None:
        if isinstance(failed, MailboxNotFound):
            conn.done(cmd, "OK", "UNSUBSCRIBE completed (the name was not subscribed: nothing to remove)")
        elif failed is not None:
            store_error(conn, cmd, failed)
        else:
            conn.done(cmd, "OK", "UNSUBSCRIBE completed")

    conn.run_slowly(job, then)


def status_items(cur) -> list[str]:
    """RFC 3501 §6.3.10 status data items: "(" item *(SP item) ")"."""
    cur.open_paren("status data items")
    items = []
    while not cur.close_paren_if_next():
        item = cur.atom("status data item").upper()
        if item not in STATUS_ITEMS:
            raise ParseError(f'unknown status data item "{item}" (one of {", ".join(STATUS_ITEMS)})')
        items.append(item)
    if not items:
        raise ParseError("empty status data item list")
    return items


def status_response(conn, name: str, items: list[str]) -> bytes:
    """The untagged STATUS data of mailbox ``name`` (StoreError when it cannot be opened)."""
    box = conn.store.mailbox(conn.user, name)
    box.refresh()
    msgs = box.messages()
    values = {"MESSAGES": len(msgs), "RECENT": sum(1 for m in msgs if m.recent), "UIDNEXT": box.uidnext,
              "UIDVALIDITY": box.uidvalidity, "UNSEEN": sum(1 for m in msgs if "\\Seen" not in m.flags),
              "HIGHESTMODSEQ": box.highest_modseq() if "HIGHESTMODSEQ" in items else 0}
    body = " ".join(f"{i} {values[i]}" for i in items)
    return b"STATUS " + conn.mailbox_name(box.name) + f" ({body})".encode()


def status(conn, cmd) -> None:
    name = cmd.args.mailbox()
    items = status_items(cmd.args)
    cmd.args.end()
    if "HIGHESTMODSEQ" in items:
        conn.condstore = True  # RFC 7162 §3.1: a CONDSTORE enabling command

    def job():  # in a worker thread: a look at another mailbox (the uidlist lock)
        try:
            return status_response(conn, name, items)
        except (StoreError, OSError) as exc:
            return exc

    def then(response) -> None:
        if isinstance(response, Exception):
            store_error(conn, cmd, response)
            return
        conn.untagged(response, "STATUS")
        conn.done(cmd, "OK", "STATUS completed")

    conn.run_slowly(job, then)


def _eight_bit_header(message: bytes) -> bool:
    header, _ = bodystructure.split_header(message)
    return any(b > 0x7F for b in header)


def append(conn, cmd) -> None:
    """APPEND (RFC 3501 §6.3.11), with several messages at once (MULTIAPPEND, RFC 4466 §2.7:
    ``append = "APPEND" SP mailbox 1*append-message``), stored all or none."""
    name = cmd.args.mailbox()
    messages: list[tuple[bytes, list[str], float]] = []
    while True:
        flags: list[str] = []
        date = None
        tok = cmd.args.peek()
        if tok is not None and tok.kind is T.LPAREN:
            flags = cmd.args.flag_list()
        tok = cmd.args.peek()
        if tok is not None and tok.kind is T.QUOTED and len(cmd.args.tokens) > cmd.args.pos + 1:
            date = parse_date_time(cmd.args.next("date-time").text())
        utf8 = cmd.args.peek_atom() == "UTF8"
        if utf8:  # RFC 6855 §4: utf8-literal = "UTF8" SP "(" literal8 ")"
            cmd.args.next("UTF8")
            cmd.args.open_paren("UTF8 message")
        message = cmd.args.string("message literal")
        if utf8 and not cmd.args.close_paren_if_next():
            raise ParseError('missing ")" after the UTF8 message literal (RFC 6855 §4)')
        if not conn.utf8 and _eight_bit_header(message):
            # RFC 6855 §4: without ENABLE UTF8=ACCEPT "the server MUST reject, with a "NO"
            # response, an "APPEND" command that includes any 8-bit character in message
            # header fields"
            conn.done(cmd, "NO", "8-bit characters in the header: send ENABLE UTF8=ACCEPT first (RFC 6855 §4)")
            return
        if not message:
            conn.done(cmd, "NO", "an empty message cannot be appended")
            return
        # RFC 3516 §4.4: a literal8 with NUL is kept, base64-encoded
        messages.append((bodystructure.binary_to_base64(message), flags,
                         date if date is not None else conn.clock()))
        if cmd.args.at_end():
            break

    def job():  # in a worker thread: the Maildir delivery fsyncs (write tmp/, rename into new/)
        try:
            box = conn.store.mailbox(conn.user, name)
            return box, box.append_many(messages)
        except Exception as exc:  # noqa: BLE001 - any store failure (OSError...) is a NO, never a lost session
            return None, exc

    def then(result) -> None:
        box, infos = result
        if box is None:
            store_error(conn, cmd, infos, trycreate=True)
        else:  # RFC 4315 §3: "OK [APPENDUID <uidvalidity> <uid>]" (a uid-set for several)
            uids = uid_set_text([info.uid for info in infos])
            conn.done(cmd, "OK", "APPEND completed", code=f"APPENDUID {box.uidvalidity} {uids}")

    conn.run_slowly(job, then)
