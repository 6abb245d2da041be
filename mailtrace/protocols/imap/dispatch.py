"""From command lines to handlers: tags, literals, redaction, state checks (RFC 3501 §2.2.1, §3).

Theory of operation.  ``command_line`` gets each line the framing cut (CRLF included).  The
first line of a command names its tag and command; a line ending in ``{n}`` announces a
literal (§4.3) whose n octets the connection reads next, sending "+" first unless the client
used the LITERAL+ form ``{n+}`` (RFC 7888).  When the command is complete it is tokenized and
run through the ``COMMANDS`` table.  Passwords (LOGIN, AUTHENTICATE) are recorded with a
redacted copy so transcripts do not show them unless asked to.
"""

from __future__ import annotations

import re

from mailtrace.knowledge import because
from mailtrace.protocols.imap import table, wire
from mailtrace.protocols.imap.connection import (
    AUTH_IR_RE, LOGIN_RE, TAG_RE, MAX_COMMAND, MAX_LITERAL, MAX_REMEMBERED_TAGS, REDACTED, Command,
)
from mailtrace.protocols.imap.lexer import ParseError
from mailtrace.protocols.imap.parser import Cursor
from mailtrace.protocols.imap.search import CHARSETS, BadCharset
from mailtrace.store.model import StoreError
from mailtrace.transcript.event import Event, Kind, Note, Side

LITERAL_ONLY = re.compile(rb"^ *(\{\d+\+?\})?\)?\r?\n\Z")


def command_line(conn, line: bytes) -> None:
    notes: list[Note] = []
    if not line.endswith(b"\r\n"):
        notes.append(Note("bare-lf", "the line ends in LF without CR (RFC 3501 §2.2: lines end in CRLF)"))
    first = not conn.parts
    redacted = None
    if first:
        if not line.strip():
            return  # an empty line is not a command; ignored, as Dovecot does
        m = TAG_RE.match(line)
        if m is None:
            conn.record(Side.CLIENT, Kind.COMMAND, line, notes=tuple(notes) + (Note("bad-tag"),))
            conn.respond(b"* BAD missing or invalid tag: a command starts with a tag, e.g. a1 NOOP\r\n",
                         tag="*", code="BAD")
            return
        tag = m.group(1).decode("ascii")
        name = m.group(2).decode("ascii").upper()
        verb = f"UID {m.group(3).decode('ascii').upper()}" if name == "UID" and m.group(3) else name
        if tag in conn.tags:
            notes.append(Note("tag-reuse", f'tag "{tag}" was used before in this session'))
        elif len(conn.tags) < MAX_REMEMBERED_TAGS:
            conn.tags.add(tag)
        spec = table.COMMANDS.get(verb)
        if spec is not None and conn.state not in spec.states:
            notes.append(Note("wrong-state", f"{verb} in the {conn.state.value} state"))
        conn.current = (tag, verb)
        conn.size = 0
        redacted = redact_first_line(verb, line)
    else:
        tag, verb = conn.current
        if not line.startswith((b" ", b")", b"\r\n", b"\n")):
            notes.append(Note("literal-length-mismatch", "the octets after a literal must be SP, \")\" or CRLF"))
        if verb == "LOGIN" and not LITERAL_ONLY.match(line):
            redacted = b" " + REDACTED + b"\r\n"
    conn.parts.append(line)
    conn.size += len(line)
    lit = wire.literal_size(line)
    if lit is not None:
        size, nonsync = lit
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                    info=None if first else {"continued": "yes"})
        if size > MAX_LITERAL or conn.size + size > MAX_COMMAND:
            conn.parts.clear()
            conn.current = None
            text = f"literal of {size} octets is larger than the {MAX_LITERAL}-octet limit"
            if nonsync:  # RFC 7888 §4: the client sends it anyway, so the connection must end
                conn.respond(f"* BYE [TOOBIG] {text}\r\n".encode(), tag="*", code="BYE", info={"code": "TOOBIG"})
                conn.close(because("literal-too-large"))
            else:
                conn.respond(f"{tag} NO [TOOBIG] {text}\r\n".encode(), tag=tag, code="NO", verb=verb,
                             info={"code": "TOOBIG"})
            return
        spec = table.COMMANDS.get(verb)
        if not nonsync and (spec is None or conn.state not in spec.states):
            # RFC 3501 §7.5: the server may answer with a tagged BAD instead of "+"; then the
            # client must not send the literal (no octets are read for a doomed command).
            conn.parts.clear()
            conn.current = None
            refuse(conn, tag, verb, spec)
            return
        secret = verb == "LOGIN" and not (first and user_is_literal(line))
        conn.begin_literal(size, secret)
        if not nonsync:
            conn.continuation("Ready for literal data")
        return
    data = b"".join(conn.parts)
    conn.parts.clear()
    conn.current = None
    if not first:
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                    info={"continued": "yes"})
        notes = []
    execute(conn, tag, verb, data, line if first else None, notes, redacted)


def refuse(conn, tag: str, verb: str, spec) -> None:
    """Tagged BAD for an unknown command or one not allowed in this state (RFC 3501 §3)."""
    if spec is None:
        if verb == "UID":
            text = "UID needs a command: UID FETCH, UID SEARCH, UID STORE, UID COPY, UID MOVE or UID EXPUNGE"
        else:
            text = f'unknown command "{verb}" (RFC 3501 §6 lists the commands)'
    else:
        allowed = " or ".join(sorted(s.value for s in spec.states))
        text = f"{verb} is not allowed in the {conn.state.value} state (only in {allowed}; RFC 3501 §3)"
    conn.respond(f"{tag} BAD {text}\r\n".encode(), tag=tag, code="BAD", verb=verb)


def user_is_literal(line: bytes) -> bool:
    m = LOGIN_RE.match(line)
    return bool(m) and m.group(2).startswith(b"{") and m.group(3).strip() == b""


def redact_first_line(verb: str, line: bytes) -> bytes | None:
    if verb == "LOGIN":
        m = LOGIN_RE.match(line)
        if m and not LITERAL_ONLY.match(m.group(3)):
            return m.group(1) + m.group(2) + b" " + REDACTED + b"\r\n"
    elif verb == "AUTHENTICATE":
        m = AUTH_IR_RE.match(line)
        if m and not LITERAL_ONLY.match(b" " + m.group(2) + b"\r\n"):
            return m.group(1) + REDACTED + b"\r\n"
    return None


def execute(conn, tag: str, verb: str, data: bytes, line: bytes | None, notes: list[Note],
            redacted: bytes | None) -> None:
    m = TAG_RE.match(data)
    assert m is not None
    start = m.end(3) if verb.startswith("UID ") else m.end(2)
    try:
        tokens, token_notes = conn.tokenize(data, start)
    except ParseError as exc:
        tokens, token_notes = None, []
        error: ParseError | None = exc
    else:
        error = None
    if line is not None:
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes + token_notes),
                    redacted=redacted)
    elif token_notes:
        conn.emit(Event(side=Side.CLIENT, kind=Kind.VIOLATION, protocol="imap", tag=tag, verb=verb,
                               state=conn.state.value, notes=tuple(token_notes)))
    spec = table.COMMANDS.get(verb)
    if spec is None or conn.state not in spec.states:
        refuse(conn, tag, verb, spec)
        return
    if error is not None:
        conn.parse_error(tag, verb, error)
        return
    cmd = Command(tag, verb, Cursor(tokens), verb.startswith("UID "))
    try:
        spec.handler(conn, cmd)
    except ParseError as exc:
        conn.parse_error(tag, verb, exc)
    except BadCharset as exc:
        conn.done(cmd, "NO", f'charset "{exc}" is not supported', code=f"BADCHARSET ({' '.join(CHARSETS)})")
    except (KeyError, OSError, ValueError, LookupError, StoreError) as exc:
        # a message that vanished or an odd file: one NO, never a crashed connection
        conn.respond(f"{tag} NO [SERVERBUG] {verb} failed: {wire.failure(exc)}\r\n".encode(), tag=tag, code="NO",
                     verb=verb, info={"code": "SERVERBUG"})
