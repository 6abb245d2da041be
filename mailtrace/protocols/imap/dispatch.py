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
from mailtrace.protocols import credentials
from mailtrace.protocols.base import wire_text
from mailtrace.protocols.imap import table, wire
from mailtrace.protocols.imap.connection import (
    TAG_RE, SPOOL_LITERAL, MAX_COMMAND, MAX_LITERAL, MAX_LITERAL_BEFORE_LOGIN, MAX_REMEMBERED_TAGS,
    REDACTED, Command,
)
from mailtrace.protocols.imap.states import State
from mailtrace.protocols.imap.lexer import ParseError, T
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
        conn.discard_spools()  # the previous command is over: its unused spooled literals go
        m = TAG_RE.match(line)
        maybe_sasl = conn.maybe_sasl  # until a tagged command, lines after AUTHENTICATE may be SASL
        conn.maybe_sasl = credentials.imap_secret_may_follow(line) or (maybe_sasl and m is None)
        if m is None:  # "a+b LOGIN", "* LOGIN", "a<TAB>LOGIN": refused, but typed as a LOGIN
            # (and a SASL response typed after a refused AUTHENTICATE has no tag either)
            masked = credentials.imap(line) or (credentials.masked_line(line) if maybe_sasl else None)
            conn.record(Side.CLIENT, Kind.COMMAND, line, notes=tuple(notes) + (Note("bad-tag"),), redacted=masked)
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
        if "LOGIN" in verb and not LITERAL_ONLY.match(line):
            redacted = b" " + REDACTED + b"\r\n"
    conn.parts.append(line)
    conn.size += len(line)
    lit = wire.literal_size(line)
    if lit is not None:
        size, nonsync = lit
        conn.record(Side.CLIENT, Kind.COMMAND, line, verb=verb, tag=tag, notes=tuple(notes), redacted=redacted,
                    info=None if first else {"continued": "yes"})
        limit = MAX_LITERAL_BEFORE_LOGIN if conn.state is State.NOT_AUTHENTICATED else MAX_LITERAL
        if size > limit or conn.size + size > MAX_COMMAND:
            conn.parts.clear()
            conn.current = None
            text = f"literal of {size} octets is larger than the {limit}-octet limit"
            if limit < MAX_LITERAL:
                text += " before login"
            if nonsync:  # RFC 7888 §4: the client sends it anyway, so the connection must end
                conn.respond(f"* BYE [TOOBIG] {wire_text(text)}\r\n".encode(), tag="*", code="BYE", info={"code": "TOOBIG"})
                conn.close(because("literal-too-large"))
            else:
                conn.respond(f"{tag} NO [TOOBIG] {wire_text(text)}\r\n".encode(), tag=tag, code="NO", verb=verb,
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
        secret = credentials.imap_literal_is_secret(verb, line if first else None)
        spool = None
        if verb == "APPEND" and size >= SPOOL_LITERAL and conn.user and hasattr(conn.store, "spool"):
            try:
                spool = conn.store.spool(conn.user)  # written to tmp/ as it arrives (bounded memory)
            except (OSError, StoreError):
                spool = None  # then held in memory, as any literal
        conn.begin_literal(size, secret, spool)
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


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
    conn.respond(f"{tag} BAD {wire_text(text)}\r\n".encode(), tag=tag, code="BAD", verb=verb)


def user_is_literal(line: bytes) -> bool:
    """The LOGIN command's first line ends with its user name as a literal."""
    return not credentials.imap_literal_is_secret("LOGIN", line)


def redact_first_line(verb: str, line: bytes) -> bytes | None:
    """The masked form of a command's first line (``protocols.credentials``: read leniently,
    so ``a UID LOGIN``, tabs and extra arguments are masked too), whatever ``verb`` it parsed as."""
    return credentials.imap(line)


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
    if conn.utf8 and any(t.kind is T.QUOTED and not _utf8(t.value) for t in tokens):
        # RFC 6855 §3: "the server MUST reject, with a "BAD" response, any octet sequences with
        # the high bit set that fail to comply with the formal syntax requirements of UTF-8"
        conn.parse_error(tag, verb, ParseError("a quoted string is not valid UTF-8 (RFC 6855 §3)"))
        return
    cmd = Command(tag, verb, Cursor(tokens, utf8=conn.utf8), verb.startswith("UID "))
    try:
        spec.handler(conn, cmd)
    except ParseError as exc:
        conn.parse_error(tag, verb, exc)
    except BadCharset as exc:
        conn.done(cmd, "NO", f'charset "{exc}" is not supported', code=f"BADCHARSET ({' '.join(CHARSETS)})")
    except (KeyError, OSError, ValueError, LookupError, StoreError) as exc:
        # a message that vanished or an odd file: one NO, never a crashed connection
        conn.respond(f"{tag} NO [SERVERBUG] {verb} failed: {wire_text(wire.failure(exc))}\r\n".encode(), tag=tag, code="NO",
                     verb=verb, info={"code": "SERVERBUG"})
