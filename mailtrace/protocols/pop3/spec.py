"""POP3 as RFC 1939 writes it: states, commands, transitions, limits, replies -- as data.

Theory of operation (RFC 1939 §3):

    "A POP3 session progresses through a number of states during its lifetime.  Once the
    TCP connection has been opened and the POP3 server has sent the greeting, the session
    enters the AUTHORIZATION state. [...] Once the client has successfully done this, the
    server acquires resources associated with the client's maildrop, and the session
    enters the TRANSACTION state. [...] When the client has issued the QUIT command, the
    session enters the UPDATE state."

Read this file top to bottom like the RFC:

* ``State``        the three states (§3);
* limits           each with the sentence it comes from;
* ``COMMANDS``     each command: where it is allowed (§9 summary), its arguments, whether
                   its +OK is followed by a multi-line body (§3); any other state gets the
                   one "wrong state" -ERR of :func:`wrong_state`;
* ``TRANSITIONS``  which answered command moves the session to which state;
* replies          ``+OK`` / ``-ERR`` as a typed :class:`~mailtrace.protocols.spec.Reply`,
                   written on the wire by :func:`wire` and read back by :func:`read_status`.

The server core (``server.py``) and the observer (``observer.py``) both read these tables:
the same :func:`read_command` for every client line, the same :func:`after_reply` for every
status line, the same redaction (:class:`Redaction`), so what one says the other says.
``mailtrace/knowledge/pop3.toml`` explains every key (a test keeps the two in sync both ways).
Nothing here does I/O, reads the clock or keeps mutable module-level state.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from mailtrace.protocols import credentials
from mailtrace.protocols.base import wire_text
from mailtrace.protocols.lines import Line
from mailtrace.protocols.spec import CommandSpec, Outcome, Reply, Transition, TransitionTable, command_row
from mailtrace.transcript.event import Args, Event, Kind, Note, Side


PROTOCOL = "pop3"


class State(str, enum.Enum):
    """The three states of RFC 1939 §3 (the value is what ``Event.state`` holds)."""

    AUTHORIZATION = "AUTHORIZATION"  # §4: identify and authenticate
    TRANSACTION = "TRANSACTION"  # §5: the maildrop is locked and open
    UPDATE = "UPDATE"  # §6: after QUIT from TRANSACTION: deletions are committed


# --- Limits, each with the rule it comes from --------------------------------------------------
#: RFC 2449 §4: "The maximum length of a command is increased from 47 characters (4
#: character command, single space, 40 character argument, CRLF) to 255 octets, including
#: the terminating CRLF."  (RFC 1939 §3 alone allowed 40-character arguments.)
MAX_COMMAND_LINE = 255
#: RFC 1939 §3: "Responses may be up to 512 characters long, including the terminating CRLF."
#: (the status line; message content lines in a multi-line response are not bound by it).
MAX_RESPONSE_LINE = 512
#: RFC 1939 §3's autologout timer: "Such a timer MUST be of at least 10 minutes' duration."
#: (The same name as SMTP's idle limit, RFC 5321 §4.5.3.2.7.)
IDLE_TIMEOUT = 600.0
#: Message numbers are decimal (RFC 1939 §4); more digits than this can name no message we
#: hold, so they are answered "no such message" without building a huge integer.
MAX_NUMBER_DIGITS = 10
#: Not from the RFC: a client that sends this many bad commands in a row is cut off, as
#: Dovecot does (its CLIENT_MAX_BAD_COMMANDS, 20 in a row); RFC 1939 §4 lets the server
#: close the connection after a negative reply.  Any +OK starts the count again.
MAX_BAD_COMMANDS = 20
#: RFC 1939 §7 (UIDL): "one to 70 characters in the range 0x21 to 0x7E" (the grader checks
#: students' servers against it).
MAX_UIDL_LENGTH = 70


# --- The configuration of a server core (one frozen dataclass; CLI flags map onto it) -----------
@dataclass(frozen=True)
class Pop3Config:
    hostname: str = "lab.test"
    #: RFC 1939 §3 autologout; 0 disables it.  Below 600 s only for tests and demos.
    idle_timeout: float = IDLE_TIMEOUT
    tls_available: bool = False  # offer STLS (the shell has a certificate)
    implementation: str = "mailtrace POP3 lab server"
    max_bad_commands: int = MAX_BAD_COMMANDS
    # A classroom lab off loopback: USER/PASS (plaintext) refused until STLS.  RFC 2595 §2.3:
    # servers which implement STARTTLS "MUST be configurable to refuse all clear-text login
    # commands or mechanisms [...] unless an encryption layer of adequate strength is active".
    # APOP sends no password.
    tls_required_for_auth: bool = False


# --- Replies (RFC 1939 §3) ----------------------------------------------------------------------
OK = "+OK"
ERR = "-ERR"
#: RFC 1939 §3: "There are currently two status indicators" (servers MUST send them upper case).
REPLY_CODES = frozenset({OK, ERR})
#: The continuation that asks for the next SASL response line (RFC 5034 §4); only the
#: observer sees it (the lab server offers USER/PASS and APOP, not SASL).
CONTINUATION = "+"

#: Extended response codes in square brackets after -ERR (RFC 2449 §8, RFC 3206 §4 and §5).
RESPONSE_CODES = frozenset({
    "IN-USE",  # RFC 2449 §8.1.2: the maildrop is locked by another session
    "LOGIN-DELAY",  # RFC 2449 §8.1.1: logging in too soon after the last time
    "AUTH",  # RFC 3206 §5: the credentials were wrong (retrying with others may work)
    "SYS/TEMP",  # RFC 3206 §4: a temporary system problem
    "SYS/PERM",  # RFC 3206 §4: a permanent system problem
    "UTF8",  # RFC 6856 §5: the message has UTF-8 headers and the client did not send UTF8
})

_OUTCOMES = MappingProxyType({OK: Outcome.OK, ERR: Outcome.FAIL, CONTINUATION: Outcome.MORE})


def outcome(reply: Reply) -> Outcome:
    """+OK did it, -ERR did nothing, "+" asks for more (anything else counts as a failure)."""
    return _OUTCOMES.get(reply.status, Outcome.FAIL)


def wire(reply: Reply) -> bytes:
    """The one place a status line is written: "+OK text", "-ERR [CODE] text" (RFC 2449 §8)."""
    text = " ".join(reply.text) if isinstance(reply.text, tuple) else reply.text
    if reply.code:
        text = f"[{reply.code}] {text}"
    return f"{reply.status} {wire_text(text)}\r\n".encode("utf-8") if text else f"{reply.status}\r\n".encode()


def read_status(line: Line | bytes, continuation: bool = True) -> tuple[Reply, tuple[Note, ...]]:
    """A server's status line read back into a ``Reply``, and what is wrong with it as notes.

    "+OK", "-ERR", "+" (a SASL challenge, RFC 5034 §4: "+" alone or "+ " and base64; only when
    ``continuation``: an AUTH awaits its answer), or "" for anything else (``bad-status``); the
    response code is kept only when it is one of ``RESPONSE_CODES`` (its family).  The notes:
    ``bare-lf``, ``response-too-long`` (RFC 1939 §3: "Responses may be up to 512 characters
    long"), ``bad-status``."""
    if isinstance(line, bytes):
        line = Line(line, len(line), bare_lf=line.endswith(b"\n") and not line.endswith(b"\r\n"))
    raw = line.raw
    notes: list[Note] = []
    if line.bare_lf:
        notes.append(Note("bare-lf"))
    if line.size > MAX_RESPONSE_LINE:
        notes.append(Note("response-too-long", f"{line.size} octets, limit {MAX_RESPONSE_LINE} (RFC 1939 §3)"))
    if raw.startswith(b"+ ") or raw.rstrip(b"\r\n") == b"+":
        if continuation:
            return Reply(CONTINUATION, decode_line(raw[2:].rstrip(b"\r\n"))), tuple(notes)
        status = ""  # "+" answers nothing but AUTH
    else:
        status = OK if raw.startswith(b"+OK") else ERR if raw.startswith(b"-ERR") else ""
    if not status:
        notes.append(Note("bad-status", "a status line starts with +OK or -ERR, in upper case"))
        return Reply("", decode_line(raw.strip())), tuple(notes)
    text = raw[len(status):].strip()
    code = ""
    if text.startswith(b"[") and b"]" in text:
        found = text[1: text.index(b"]")].decode("ascii", "replace")
        if found.split("/")[0] in _CODE_FAMILIES:
            code = found
    return Reply(status, decode_line(text), code=code), tuple(notes)


_CODE_FAMILIES = frozenset(c.split("/")[0] for c in RESPONSE_CODES)
#: Reply codes the knowledge explains though the lab server never sends them (the observer meets "+").
DOCUMENTED_CODES = frozenset({CONTINUATION})


# --- Commands (RFC 1939 §9 summary; RFC 2449, RFC 2595, RFC 5034, RFC 6856) ---------------------
class Multiline(enum.Enum):
    """When the +OK answer to a command is followed by lines ending in ".CRLF" (RFC 1939 §3)."""

    NEVER = "never"
    ALWAYS = "always"
    WITHOUT_ARGUMENT = "without-argument"  # LIST and UIDL: multi-line only when given no msg


class Arg(enum.Enum):
    """Kinds of command argument, checked by :func:`parse_arguments`."""

    MSG = "msg"  # a message-number: decimal, 1..n (RFC 1939 §4)
    LINES = "lines"  # TOP's count of body lines: a non-negative decimal number (§7)
    NAME = "name"  # a mailbox (user) name: one word
    DIGEST = "digest"  # APOP: 32 lower-case hex digits of MD5 (§7)
    TEXT = "text"  # PASS: the rest of the line, spaces included (§7)


def command(states, rfc: str, syntax: str, *args: Arg, optional: int = 0,
            multiline: Multiline = Multiline.NEVER, closes: bool = False, starts_tls: bool = False) -> CommandSpec:
    """One row of the command table (``spec.command_row``, the argument order of every protocol);
    POP3's own facts go in ``extra``: ``args`` (kinds), ``optional`` (how many trailing args may
    be left out), ``multiline``, ``closes`` (once answered, the server closes the connection) and
    ``starts_tls`` (an +OK starts TLS), the last two under the keys SMTP uses."""
    return command_row(states, rfc, syntax, args=args, optional=optional, multiline=multiline,
                       closes=closes, starts_tls=starts_tls)


def is_multiline(spec: CommandSpec, has_argument: bool) -> bool:
    """Whether +OK to this command is followed by a body ending in ".CRLF" (RFC 1939 §3)."""
    kind = spec.extra["multiline"]
    return kind is Multiline.ALWAYS or (kind is Multiline.WITHOUT_ARGUMENT and not has_argument)


#: Where a command is allowed, named as RFC 1939 §9 does ("valid in the AUTHORIZATION state").
AUTHORIZATION_ONLY = frozenset({State.AUTHORIZATION})
TRANSACTION_ONLY = frozenset({State.TRANSACTION})
AUTHORIZATION_OR_TRANSACTION = frozenset({State.AUTHORIZATION, State.TRANSACTION})

#: Every command the lab server offers; what each does is ``server.HANDLERS``.
COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({
    "USER": command(AUTHORIZATION_ONLY, "RFC 1939 §7", "USER name", Arg.NAME),
    "PASS": command(AUTHORIZATION_ONLY, "RFC 1939 §7", "PASS string", Arg.TEXT),
    "APOP": command(AUTHORIZATION_ONLY, "RFC 1939 §7", "APOP name digest", Arg.NAME, Arg.DIGEST),
    # §6: "Whether the removal was successful or not, the server then [...] closes the TCP
    # connection"; from AUTHORIZATION "the POP3 session terminates" (§6) after "+OK [...] signing
    # off" (§4).
    "QUIT": command(AUTHORIZATION_OR_TRANSACTION, "RFC 1939 §4, §6", "QUIT", closes=True),
    "CAPA": command(AUTHORIZATION_OR_TRANSACTION, "RFC 2449 §5", "CAPA", multiline=Multiline.ALWAYS),
    "STLS": command(AUTHORIZATION_ONLY, "RFC 2595 §4", "STLS", starts_tls=True),
    "UTF8": command(AUTHORIZATION_ONLY, "RFC 6856 §2.1", "UTF8"),
    "STAT": command(TRANSACTION_ONLY, "RFC 1939 §5", "STAT"),
    "LIST": command(TRANSACTION_ONLY, "RFC 1939 §5", "LIST [msg]", Arg.MSG, optional=1,
                    multiline=Multiline.WITHOUT_ARGUMENT),
    "RETR": command(TRANSACTION_ONLY, "RFC 1939 §5", "RETR msg", Arg.MSG, multiline=Multiline.ALWAYS),
    "DELE": command(TRANSACTION_ONLY, "RFC 1939 §5", "DELE msg", Arg.MSG),
    "NOOP": command(TRANSACTION_ONLY, "RFC 1939 §5", "NOOP"),
    "RSET": command(TRANSACTION_ONLY, "RFC 1939 §5", "RSET"),
    "TOP": command(TRANSACTION_ONLY, "RFC 1939 §7", "TOP msg n", Arg.MSG, Arg.LINES, multiline=Multiline.ALWAYS),
    "UIDL": command(TRANSACTION_ONLY, "RFC 1939 §7", "UIDL [msg]", Arg.MSG, optional=1,
                    multiline=Multiline.WITHOUT_ARGUMENT),
})

#: Commands the lab server does not offer but the observer understands in other servers'
#: conversations (proxy, pcap import).  AUTH (RFC 5034 §4): "AUTH mechanism [initial-response]",
#: then "+ challenge" continuations answered by one base64 line each, until +OK or -ERR.
OBSERVED_COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({
    "AUTH": command(AUTHORIZATION_ONLY, "RFC 5034 §4", "AUTH mechanism [initial-response]", Arg.NAME, Arg.NAME,
                    optional=1),
})
#: What an observer recognises: everything above.
ALL_COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({**COMMANDS, **OBSERVED_COMMANDS})
#: Every verb this module recognises (each has a knowledge entry): ``COMMANDS`` plus the ones
#: named beyond it (here those only the observer meets), as in SMTP.
KNOWN_COMMANDS = frozenset(ALL_COMMANDS)
#: Verbs of DATA events the server and the observer emit: the multi-line bodies, and the
#: client's SASL response lines (AUTH, observer only).
DATA_VERBS = frozenset(name for name, spec in COMMANDS.items()
                       if spec.extra["multiline"] is not Multiline.NEVER) | {"AUTH"}

#: Capabilities listed by CAPA (RFC 2449 §6). STLS only while TLS can still be started.
CAPABILITIES = ("TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "UTF8")  # UTF8: RFC 6856 §2


# --- Transitions (RFC 1939 §3, §4, §6) ---------------------------------------------------------
#: In a state, a command answered with an outcome moves the session; no row: it stays.  Only
#: commands the server *ran* are looked up (see :func:`after_reply`).
TRANSITIONS = TransitionTable([
    # §3: "Once the client has successfully done this [...] the session enters the TRANSACTION state"
    Transition(AUTHORIZATION_ONLY, "PASS", Outcome.OK, State.TRANSACTION, "PASS: +OK"),
    Transition(AUTHORIZATION_ONLY, "APOP", Outcome.OK, State.TRANSACTION, "APOP: +OK"),
    Transition(AUTHORIZATION_ONLY, "AUTH", Outcome.OK, State.TRANSACTION, "AUTH: +OK"),  # RFC 5034 §4
    # §6: "When the client issues the QUIT command from the TRANSACTION state, the POP3 session
    # enters the UPDATE state" -- and answers +OK, or "-ERR some deleted messages not removed".
    Transition(TRANSACTION_ONLY, "QUIT", Outcome.OK, State.UPDATE, "QUIT: +OK"),
    Transition(TRANSACTION_ONLY, "QUIT", Outcome.FAIL, State.UPDATE, "QUIT: -ERR (removal failed)"),
])


def after_reply(state: State, verb: str, result: Outcome, ran: bool) -> State:
    """The state once ``verb``'s reply with ``result`` was sent.  ``ran``: the command was well
    formed and allowed in ``state``, so the server ran it; a -ERR to one it refused (unknown,
    wrong state, bad arguments: RFC 1939 §3) changes nothing.  A +OK always means it ran."""
    if result is Outcome.FAIL and not ran:
        return state
    return TRANSITIONS.next_state(state, verb, result)


def closes(verb: str, result: Outcome, ran: bool) -> bool:
    """Whether the server closes the connection after this reply (QUIT, RFC 1939 §4 and §6)."""
    spec = ALL_COMMANDS.get(verb)
    return spec is not None and spec.extra["closes"] and (ran or result is Outcome.OK)


# --- Violations (knowledge keys, table [violations] of pop3.toml) ----------------------------
VIOLATIONS = frozenset({
    "bare-lf",  # a line ended in LF alone (RFC 1939 §3: "terminated by a CRLF pair")
    "line-too-long",  # command line over MAX_COMMAND_LINE (RFC 2449 §4)
    "unknown-command",  # RFC 1939 §3: -ERR for an unrecognized command
    "wrong-state",  # RFC 1939 §3: -ERR for a command in an incorrect state
    "bad-argument",  # missing, extra or malformed arguments
    "pass-without-user",  # PASS not right after a successful USER (RFC 1939 §7)
    "after-quit",  # bytes sent after QUIT (the server has closed the session)
    "after-stls",  # commands pipelined after STLS, before the TLS handshake (RFC 2595 §4)
    "before-greeting",  # the client spoke before the server's greeting (RFC 1939 §4)
    "no-quit",  # the connection ended in TRANSACTION without QUIT: nothing is deleted (§6)
    "too-many-errors",  # the server hung up after MAX_BAD_COMMANDS bad commands
    "bad-status",  # a server line that is neither +OK nor -ERR (RFC 1939 §3)
    "response-too-long",  # a status line over MAX_RESPONSE_LINE (RFC 1939 §3)
    "incomplete-response",  # a response cut off before its CRLF or its ".CRLF"
    "incomplete-command",  # a command line cut off before its CRLF
})


def wrong_state(verb: str, spec: CommandSpec, state: State) -> tuple[Note, str]:
    """RFC 1939 §3: "A server MUST respond to a command issued when the session is in an
    incorrect state by responding with a negative status indicator": the note and the -ERR text."""
    allowed = " or ".join(s.value for s in State if s in spec.states)
    return (Note("wrong-state", f"{verb} is allowed in {allowed}, not {state.value}"),
            f"{verb} not allowed in {state.value} state")


def user_pass(verb: str, user_waiting: bool) -> tuple[bool, tuple[Note, ...]]:
    """USER then PASS, for a command the server runs: whether a USER awaits its PASS after
    ``verb``, and the note a PASS earns without one.  RFC 1939 §7: PASS "may only be given in the
    AUTHORIZATION state immediately after a successful USER command" (read as Dovecot reads it:
    other commands may come between; APOP ends the wait)."""
    if verb not in ("USER", "PASS", "APOP"):
        return user_waiting, ()
    return verb == "USER", ((Note("pass-without-user"),) if verb == "PASS" and not user_waiting else ())


def marked_after(verb: str, result: Outcome, marked: int) -> int:
    """How many messages are marked deleted after this reply: +OK to DELE marks one (a message
    already marked gets -ERR), +OK to RSET unmarks them all (RFC 1939 §5)."""
    if result is not Outcome.OK:
        return marked
    return marked + 1 if verb == "DELE" else 0 if verb == "RSET" else marked


def no_quit(state: State, marked: int) -> Event:
    """The connection ended in TRANSACTION without QUIT: nothing is deleted (RFC 1939 §6), not
    even the ``marked`` messages (the note's detail; worded by knowledge/pop3.toml)."""
    return Event(side=Side.CLIENT, kind=Kind.VIOLATION, state=state.value, notes=(Note("no-quit", str(marked)),))


def too_long(size: int) -> Note:
    return Note("line-too-long", f"{size} octets, limit {MAX_COMMAND_LINE} (RFC 2449 §4)")


# --- Reading a client line: the one parser of the core and the observer ------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """A client line read against a command table.  ``spec`` is None for an unknown keyword;
    ``refusal`` is the -ERR text when the server must not run it (then ``notes`` say why);
    ``typed`` the message number and TOP's line count for the transcript (``Event.args``)."""

    keyword: str  # as typed
    verb: str  # upper case; "" when unknown
    spec: CommandSpec | None
    args: tuple = ()
    notes: tuple[Note, ...] = ()
    refusal: str = ""
    typed: Args | None = None

    @property
    def runs(self) -> bool:
        return self.spec is not None and not self.refusal


def read_command(line: bytes, state: State | None, table: Mapping[str, CommandSpec] = COMMANDS, *,
                 bare_lf: bool = False) -> Command:
    """Keyword, state check (skipped when ``state`` is None: an observer judges a pipelined
    command later, see :func:`wrong_state`), then the arguments (RFC 1939 §3).  ``bare_lf``: the
    framer saw the line end in LF alone (RFC 1939 §3: "terminated by a CRLF pair"), noted first."""
    lf: tuple[Note, ...] = (Note("bare-lf"),) if bare_lf else ()
    text = decode_line(line.rstrip(b"\r\n"))
    keyword, _, rest = text.partition(" ")
    verb = keyword.upper()
    spec = table.get(verb)
    if spec is None:
        return Command(keyword, "", None, notes=(*lf, Note("unknown-command", keyword[:40])), refusal="unknown command")
    try:
        args, problem = tuple(parse_arguments(spec, rest)), ""
    except ArgumentError as exc:
        args, problem = (), str(exc)
    typed = _typed(spec, args)
    if state is not None and state not in spec.states:  # the state first: no argument is looked at
        note, refusal = wrong_state(verb, spec, state)
        return Command(keyword, verb, spec, notes=(*lf, note), refusal=refusal, typed=typed)
    if problem:
        return Command(keyword, verb, spec, notes=(*lf, Note("bad-argument", problem)), refusal=problem)
    return Command(keyword, verb, spec, args, notes=lf, typed=typed)


def _typed(spec: CommandSpec, args: tuple) -> Args | None:
    """``Event.args``: the message number (RFC 1939 §5) and TOP's line count (§7), when given."""
    found = {"message" if kind is Arg.MSG else "lines": value
             for kind, value in zip(spec.extra["args"], args) if kind in (Arg.MSG, Arg.LINES)}
    return _args(found.get("message"), found.get("lines")) if found else None


@functools.lru_cache(maxsize=4096)
def _args(message: int | None, lines: int | None) -> Args:
    """One ``Args`` per message number and line count (it is immutable: every RETR 5 can share
    one; building a frozen dataclass costs a microsecond, a RETR's line is read in five)."""
    return Args(message=message, lines=lines)


class ArgumentError(ValueError):
    """A command's arguments are malformed; ``str(exc)`` is the text after ``-ERR``."""


def parse_arguments(spec: CommandSpec, text: str) -> list:
    """Check ``text`` (everything after the keyword and its space) against ``spec``.

    Returns the arguments, numbers as ``int``.  A message number with more digits than
    ``MAX_NUMBER_DIGITS`` comes back as ``-1`` (no message has it).
    """
    kinds: tuple[Arg, ...] = spec.extra["args"]
    if kinds and kinds[-1] is Arg.TEXT:  # PASS: the whole rest is one argument
        if not text:
            raise ArgumentError("missing argument")
        return [text]
    words = text.split(" ") if text else []
    if any(w == "" for w in words):
        raise ArgumentError("arguments are separated by a single space")
    least, most = len(kinds) - spec.extra["optional"], len(kinds)
    if len(words) < least:
        raise ArgumentError("missing argument" if len(words) == least - 1 else "missing arguments")
    if len(words) > most:
        raise ArgumentError("too many arguments" if most else "this command takes no arguments")
    return [_convert(kind, word) for kind, word in zip(kinds, words)]


def _convert(kind: Arg, word: str):
    if kind in (Arg.MSG, Arg.LINES):
        if not word.isascii() or not word.isdigit():
            what = "message number" if kind is Arg.MSG else "line count"
            raise ArgumentError(f"invalid {what} {word[:40]!r}")
        if len(word) > MAX_NUMBER_DIGITS:
            return -1 if kind is Arg.MSG else 10**MAX_NUMBER_DIGITS
        return int(word)
    if kind is Arg.DIGEST:
        if len(word) != 32 or any(c not in "0123456789abcdefABCDEF" for c in word):
            raise ArgumentError("the APOP digest is 32 hexadecimal digits (MD5)")
        return word.lower()
    if not word.isprintable():
        raise ArgumentError("arguments are printable ASCII (RFC 1939 §3)")
    return word


class Redaction:
    """What a transcript shows instead of a client line that carries a secret: PASS, APOP,
    AUTH read leniently (``protocols.credentials``), and the lines typed after an AUTH until
    the next command this side recognises (a SASL response sent though the server refused
    AUTH).  One per session, in the core and in the observer alike."""

    #: Every line ``credentials.pop3`` masks or ``starts_sasl`` notices holds one of these
    #: (any case): a line with none (RETR 5, STAT, ...) is answered without splitting it.
    _MAY_HOLD_SECRET = re.compile(rb"pass|auth|apop|user", re.IGNORECASE)  # (one search: a RETR's line costs 0.3 us, not 1)

    def __init__(self) -> None:
        self._after_auth = False

    def of(self, line: bytes, known: bool) -> bytes | None:
        if not self._after_auth and self._MAY_HOLD_SECRET.search(line) is None:
            return None
        after_auth, self._after_auth = self._after_auth, credentials.starts_sasl(line) or (self._after_auth and not known)
        masked = credentials.pop3(line)
        if masked is None and after_auth and not known:
            masked = credentials.masked_line(line)
        return masked

    @staticmethod
    def sasl_response(line: bytes) -> bytes | None:
        """A line answering a "+" challenge (RFC 5034 §4): base64 credentials, always masked;
        "*" (the client cancels) carries none."""
        if line.rstrip(b"\r\n") == b"*":
            return None
        return credentials.POP3_MASK + credentials.line_end(line)


# --- Greeting timestamp, unique ids, message bodies -----------------------------------------------
def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 §7: MD5 of the greeting's timestamp (brackets included) then the secret."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def make_timestamp(pid: int, clock: int, hostname: str) -> str:
    """A greeting timestamp in RFC 822 msg-id syntax, "<process-ID.clock@hostname>" (§7).

    The caller passes a fresh ``clock`` each time: it "MUST be different each time the POP3
    server issues a banner greeting".
    """
    return f"<{pid}.{clock}@{hostname}>"


def uidl_of(uid: int, uidvalidity: int) -> str:
    """The unique-id of a message: what Dovecot's default ``pop3_uidl_format = %08Xu%08Xv`` gives.

    (Dovecot 2.3 writes that hex in lower case: tests/integration/test_pop3_dovecot.py compares.)  Stable
    across sessions and restarts because the store persists both numbers in the same
    ``dovecot-uidlist`` Dovecot reads, so a client keeping mail on the server can switch
    between Dovecot and mailtrace without downloading it all again; 16 characters of 0-9a-f,
    well inside RFC 1939 §7's "one to 70 characters in the range 0x21 to 0x7E"
    (``MAX_UIDL_LENGTH``).
    """
    return f"{uid:08x}{uidvalidity:08x}"


_DOT_AFTER_LF = re.compile(rb"\n\.")


def dot_lines(data: bytes) -> bool:
    """Whether a line after the first starts with "." (what ``byte_stuff`` must double)."""
    return _DOT_AFTER_LF.search(data) is not None  # (a compiled search beats ``b"\n." in data`` 3x on text)


def byte_stuff(data: bytes, dots: bool | None = None) -> bytes:
    """Prefix "." to every line that starts with "." (RFC 1939 §3) and end with ".CRLF".

    ``data`` is a message in wire form (CRLF line endings).  A message that does not end in
    CRLF gets one before the terminator, as Dovecot does.  ``dots``: ``dot_lines(data)`` when
    the caller knows it already (of the whole message, for a part of its lines too).
    """
    if data.startswith(b"."):
        data = b"." + data
    if dot_lines(data) if dots is None else dots:
        data = data.replace(b"\n.", b"\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def ends_body(line: bytes) -> bool:
    """RFC 1939 §3: a multi-line response ends with "a termination octet (decimal code 046,
    ".") and a CRLF pair" on a line of its own (read leniently: a bare LF too)."""
    return line in (b".\r\n", b".\n")


def top_of(data: bytes, lines: int) -> bytes:
    """The header, the blank line and the first ``lines`` body lines (RFC 1939 §7 TOP)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data  # no body: the whole message is header
    head, body = data[: end + 4], data[end + 4:]
    pos = 0
    for _ in range(lines):
        nl = body.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return head + body[:pos]


def decode_line(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")

