"""From command lines to handlers: tags, literals, redaction, state checks (RFC 3501 §2.2.1, §3).

Theory of operation.  ``command_line`` gets each line the framing cut (CRLF included).  The
first line of a command names its tag and command; a line ending in ``{n}`` announces a
literal (§4.3) whose n octets the connection reads next, sending "+" first unless the client
used the LITERAL+ form ``{n+}`` (RFC 7888).  When the command is complete it is tokenized and
run through the ``COMMANDS`` table.  Passwords (LOGIN, AUTHENTICATE) are recorded with a
redacted copy so transcripts do not show them unless asked to.
"""

from __future__ import annotations

from mailtrace.knowledge import because
from mailtrace.protocols import credentials
from mailtrace.protocols.imap import commands_list, commands_mailbox, commands_selected, commands_session, spec
from mailtrace.protocols.imap.commandline import blank, tokens_of
from mailtrace.protocols.imap.server import Command, LazySpool
from mailtrace.protocols.imap.wire import failure
from mailtrace.protocols.imap.lexer import ParseError, T
from mailtrace.protocols.imap.parser import Cursor
from mailtrace.protocols.imap.search import CHARSETS, BadCharset
from mailtrace.protocols.imap.spec import MAX_COMMAND, MAX_LITERAL, MAX_LITERAL_BEFORE_LOGIN, SPOOL_LITERAL, State
from mailtrace.protocols.lines import literal_announced
from mailtrace.store.model import StoreError
from mailtrace.transcript.event import Event, Kind, Note, Side

# The server core's handler of each command of ``spec.COMMANDS`` (the UID forms share theirs).
HANDLERS = {
    "CAPABILITY": commands_session.capability, "NOOP": commands_session.noop, "LOGOUT": commands_session.logout,
    "ID": commands_session.id_, "STARTTLS": commands_session.starttls, "AUTHENTICATE": commands_session.authenticate,
    "LOGIN": commands_session.login, "NAMESPACE": commands_session.namespace, "ENABLE": commands_session.enable,
    "IDLE": commands_session.idle,
    "SELECT": commands_mailbox.select, "EXAMINE": commands_mailbox.examine, "CREATE": commands_mailbox.create,
    "DELETE": commands_mailbox.delete, "RENAME": commands_mailbox.rename, "SUBSCRIBE": commands_mailbox.subscribe,
    "UNSUBSCRIBE": commands_mailbox.unsubscribe, "STATUS": commands_mailbox.status, "APPEND": commands_mailbox.append,
    "LIST": commands_list.list_, "LSUB": commands_list.lsub,
    "CHECK": commands_selected.check, "CLOSE": commands_selected.close, "UNSELECT": commands_selected.unselect,
    "EXPUNGE": commands_selected.expunge, "UID EXPUNGE": commands_selected.expunge,
    "SEARCH": commands_selected.do_search, "UID SEARCH": commands_selected.do_search,
    "FETCH": commands_selected.do_fetch, "UID FETCH": commands_selected.do_fetch,
    "STORE": commands_selected.do_store, "UID STORE": commands_selected.do_store,
    "COPY": commands_selected.copy, "UID COPY": commands_selected.copy,
    "MOVE": commands_selected.move, "UID MOVE": commands_selected.move,
    "SORT": commands_selected.do_sort, "UID SORT": commands_selected.do_sort,
    "THREAD": commands_selected.do_thread, "UID THREAD": commands_selected.do_thread,
}


def command_line(conn, line: bytes) -> None:
    first = not conn.parts
    if first:
        if blank(line):
            return
        conn.discard_spools()  # the previous command is over: its unused spooled literals go
        start = conn.commands.first_line(line, conn.state)
        notes, redacted = start.notes, start.redacted
        if start.tag is None:
            conn.record(Side.CLIENT, Kind.COMMAND, line, notes=tuple(notes), redacted=redacted)
            conn.status("*", "BAD", "missing or invalid tag: a command starts with a tag, e.g. a1 NOOP")
            return
        tag, verb = start.tag, start.verb
        conn.current = (tag, verb)
        conn.size = 0
    else:
        tag, verb = conn.current
        notes, redacted = conn.commands.next_line(verb, line)
    conn.parts.append(line)
    conn.size += len(line)
    lit = literal_announced(line)
    if lit is not None:
        size, nonsync = lit
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                    continued=not first)
        limit = MAX_LITERAL_BEFORE_LOGIN if conn.state is State.NOT_AUTHENTICATED else MAX_LITERAL
        if size > limit or conn.size + size > MAX_COMMAND:
            conn.parts.clear()
            conn.current = None
            text = f"literal of {size} octets is larger than the {limit}-octet limit"
            if limit < MAX_LITERAL:
                text += " before login"
            if nonsync:  # RFC 7888 §4: the client sends it anyway, so the connection must end
                conn.status("*", "BYE", text, code="TOOBIG")
                conn.close(because("literal-too-large"))
            else:
                conn.status(tag, "NO", text, code="TOOBIG", verb=verb)
            return
        if not nonsync and not spec.allowed(verb, conn.state):
            # RFC 3501 §7.5: the server may answer with a tagged BAD instead of "+"; then the
            # client must not send the literal (no octets are read for a doomed command).
            conn.parts.clear()
            conn.current = None
            refuse(conn, tag, verb)
            return
        secret = credentials.imap_literal_is_secret(verb, line if first else None)
        spool = None
        if verb == "APPEND" and size >= SPOOL_LITERAL and conn.user and hasattr(conn.store, "spool"):
            # written to tmp/ as it arrives (bounded memory); the file is made by the first write job
            spool = LazySpool(lambda user=conn.user: conn.store.spool(user))
        conn.begin_literal(size, secret, spool)
        if not nonsync:
            conn.continuation("Ready for literal data", verb)
        return
    data = b"".join(conn.parts)
    conn.parts.clear()
    conn.current = None
    execute(conn, tag, verb, data, line, first, notes, redacted)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def refuse(conn, tag: str, verb: str) -> None:
    """Tagged BAD for an unknown command or one not allowed in this state (RFC 3501 §3)."""
    command = spec.COMMANDS.get(verb)
    if command is None:
        if verb == "UID":
            text = "UID needs a command: UID FETCH, UID SEARCH, UID STORE, UID COPY, UID MOVE or UID EXPUNGE"
        else:
            text = f'unknown command "{verb}" (RFC 3501 §6 lists the commands)'
    else:
        allowed = " or ".join(sorted(s.value for s in command.states))
        text = f"{verb} is not allowed in the {conn.state.value} state (only in {allowed}; RFC 3501 §3)"
    conn.status(tag, "BAD", text, verb=verb)


def execute(conn, tag: str, verb: str, data: bytes, line: bytes, first: bool, notes: list[Note],
            redacted: bytes | None) -> None:
    """Run the complete command ``data`` whose last line is ``line`` (its first: ``first``)."""
    try:
        tokens, token_notes = tokens_of(data, verb)
    except ParseError as exc:
        tokens, token_notes = None, []
        error: ParseError | None = exc
    else:
        error = None
    args = conn.commands.args(verb, tokens)  # what it names, read as the observer reads it
    if first:
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes + token_notes),
                    redacted=redacted, args=args)
    else:
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                    continued=True, args=args)
    if not first and token_notes:
        conn.emit(Event(side=Side.CLIENT, kind=Kind.VIOLATION, protocol="imap", tag=tag, verb=verb,
                               state=conn.state.value, notes=tuple(token_notes)))
    command = spec.COMMANDS.get(verb)
    if command is None or conn.state not in command.states:
        refuse(conn, tag, verb)
        return
    if error is not None:
        conn.status(tag, "BAD", str(error), verb=verb)  # "arguments invalid" (§6)
        return
    if conn.utf8 and any(t.kind is T.QUOTED and not _utf8(t.value) for t in tokens):
        # RFC 6855 §3: "the server MUST reject, with a "BAD" response, any octet sequences with
        # the high bit set that fail to comply with the formal syntax requirements of UTF-8"
        conn.status(tag, "BAD", "a quoted string is not valid UTF-8 (RFC 6855 §3)", verb=verb)
        return
    cmd = Command(tag, verb, Cursor(tokens, utf8=conn.utf8), verb.startswith("UID "))
    try:
        HANDLERS[verb](conn, cmd)
    except ParseError as exc:
        conn.status(tag, "BAD", str(exc), verb=verb)  # "arguments invalid" (§6)
    except BadCharset as exc:
        conn.done(cmd, "NO", f'charset "{exc}" is not supported', code=f"BADCHARSET ({' '.join(CHARSETS)})")
    except (KeyError, OSError, ValueError, LookupError, StoreError) as exc:
        # a message that vanished or an odd file: one NO, never a crashed connection
        conn.status(tag, "NO", f"{verb} failed: {failure(exc)}", code="SERVERBUG", verb=verb)
