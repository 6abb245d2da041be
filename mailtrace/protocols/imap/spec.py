"""IMAP4rev1 written down once (RFC 3501 §3 and §6): states, commands, transitions, limits.

Theory of operation.  RFC 3501 §3: "Once the connection between client and server is
established, an IMAP4rev1 connection is in one of four states.  The initial state is
identified in the server greeting.  Most commands are only valid in certain states.  It is a
protocol error for the client to attempt a command while the connection is in an
inappropriate state, and the server will respond with a BAD or NO (depending upon server
implementation) command completion result."  This server answers BAD.

    not authenticated --LOGIN/AUTHENTICATE: OK--> authenticated --SELECT/EXAMINE: OK--> selected
           |                                       ^------ CLOSE, UNSELECT: OK ------------/
           |                                       ^------ SELECT/EXAMINE: NO ------------/
           `------------------- LOGOUT: OK (from any state) ------------------> logout

Each client command carries a tag (§2.2.1) and ends with a tagged completion: OK, NO or BAD
(§7.1).  The state changes *only* when a tagged completion is looked up in ``TRANSITIONS``:
the server core does it for the reply it sends, ``ImapObserver`` for the reply it sees (a
proxy, a capture, the grader judging a student's server), so both always agree.  §3.2: the
authenticated state "is entered ... after an error in selecting a mailbox, or after a
successful CLOSE command".

The command lines themselves (tag, verb, literals, redaction) are read by ``commandline.py``
and ``protocols/lines.py``; the handlers of the server core are in ``commands_*.py``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from mailtrace.protocols.base import MAX_OBSERVED_LINE, wire_text
from mailtrace.protocols.spec import ANY_VERB, CommandSpec, Outcome, Reply, Transition, TransitionTable

__all__ = ["ANY_VERB", "CAPABILITIES", "COMMANDS", "CommandSpec", "ImapConfig", "KNOWN_COMMANDS", "Outcome",
           "PROTOCOL", "REPLY_CODES", "RESPONSES", "RESPONSE_CODES", "Reply", "State", "TRANSITIONS",
           "VIOLATIONS", "outcome", "read_reply", "wire"]

PROTOCOL = "imap"


class State(str, enum.Enum):
    """RFC 3501 §3: "an IMAP4rev1 connection is in one of four states"; the value is what
    ``Event.state`` holds."""

    NOT_AUTHENTICATED = "not authenticated"  # §3.1: "the client MUST supply authentication credentials"
    AUTHENTICATED = "authenticated"  # §3.2: "the client MUST select a mailbox"
    SELECTED = "selected"  # §3.3: "a mailbox has been selected to access"
    LOGOUT = "logout"  # §3.4: "the connection is being terminated"


# -- the states where commands are valid, as RFC 3501 §6 groups them ---------------------------
ANY_STATE = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})  # §6.1
NOT_AUTHENTICATED_ONLY = frozenset({State.NOT_AUTHENTICATED})  # §6.2
# §6.3: "In the authenticated state, commands that manipulate mailboxes as atomic entities are
# permitted"; §6.4: "In the selected state, commands that manipulate messages in a mailbox are
# permitted.  In addition to the universal commands ..., and the authenticated state commands"
AUTHENTICATED_OR_SELECTED = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED_ONLY = frozenset({State.SELECTED})  # §6.4
# ENABLE: "only valid in the authenticated state ..., before any mailbox is selected" (RFC 5161 §3.1)
AUTHENTICATED_ONLY = frozenset({State.AUTHENTICATED})


# -- limits ----------------------------------------------------------------------------------
# RFC 2683 §3.2.1.5: "a server should allow for a command line of at least 8000 octets ...
# The server should send a BAD response to a command that does not end within the server's
# maximum accepted command length."  We accept 64 KiB per line (the observers' limit too).
MAX_COMMAND_LINE = MAX_OBSERVED_LINE
# The largest literal accepted (an APPENDed message).  RFC 3501 sets no limit; a larger
# synchronizing literal gets NO [TOOBIG] (RFC 5530 §3) instead of the "+", so not a single
# octet of it is sent (RFC 3501 §7.5 lets the server refuse the continuation).
MAX_LITERAL = 64 * 1024 * 1024
# Before LOGIN a literal can only be a user name or a password: RFC 7888 §5's LITERAL- size
# ("non-synchronizing literals ... MUST NOT be larger than 4096 bytes") is plenty, and an
# unauthenticated client cannot make the server buffer more.
MAX_LITERAL_BEFORE_LOGIN = 4096
# All the literals of one command together (e.g. MULTIAPPEND-like abuse).
MAX_COMMAND = MAX_LITERAL + MAX_COMMAND_LINE
# Not from the RFC: a client that gets this many BAD completions in a row (a fuzzer, a client
# speaking another protocol) is sent an untagged BYE and cut off, as Dovecot does (its
# CLIENT_MAX_BAD_COMMANDS, 20); SMTP and POP3 have the same limit.  Any OK or NO starts the
# count again.  RFC 3501 §7.1.5: BYE "indicates that the server is about to close the connection".
MAX_BAD_COMMANDS = 20
# An APPEND literal at least this large is written to the Maildir's tmp/ as it arrives
# (``store.spool``) instead of being held in memory; the transcript keeps its first
# LITERAL_PREVIEW octets (and its size).
SPOOL_LITERAL = 256 * 1024
LITERAL_PREVIEW = 16 * 1024
# RFC 3501 §5.4: "If a server has an inactivity autologout timer, the duration of that timer
# MUST be at least 30 minutes."
IDLE_TIMEOUT = 30 * 60
# Remembered tags for the tag-reuse check (bounded, so a long session cannot grow it forever).
MAX_REMEMBERED_TAGS = 10_000
# What an observer keeps of one literal (the rest is counted, not kept).
MAX_OBSERVED_LITERAL = 1024 * 1024

# -- grammar ---------------------------------------------------------------------------------
# §9: tag = 1*<any ASTRING-CHAR except "+">; command = tag SP (command-any / ...) CRLF.
# The optional third word is the command of a UID command (§6.4.8).
TAG_RE = re.compile(rb"^([^\x00-\x20(){%*\"\\+\x7f-\xff]+) +([A-Za-z][A-Za-z0-9-]*)(?: +([A-Za-z]+))?")
# What a password is replaced with in transcripts.
REDACTED = b"***"
# RFC 3501 §7.4.1: no EXPUNGE response "while responding to a FETCH, STORE, or SEARCH command".
# RFC 5256 §3: the same for SORT and THREAD ("but are permitted during a UID SORT command").
NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})
# Commands that look at the mailbox on disk even when no change was signalled (§6.1.2 NOOP
# "can be used as a periodic poll for new messages", §6.4.1 CHECK).
FORCE_SYNC = frozenset({"NOOP", "CHECK", "IDLE"})


# -- commands (RFC 3501 §6, and the extensions we offer) -------------------------------------
# ``extra`` holds the facts both roles need beyond the states:
#   continuation: what the client sends after the server's "+" (§7.5) other than a literal:
#                 "sasl" (a base64 line, RFC 3501 §6.2.2) or "done" (the DONE line, RFC 2177 §3)
#   starts_tls:   a tagged OK means the next octets are the TLS negotiation (RFC 3501 §6.2.1)
SASL, DONE = "sasl", "done"


def _command(states: frozenset, rfc: str, syntax: str, **extra) -> CommandSpec:
    return CommandSpec(states=states, rfc=rfc, syntax=syntax, extra=MappingProxyType(extra))


_ANY, _NOT_AUTH, _AUTH, _SELECTED = ANY_STATE, NOT_AUTHENTICATED_ONLY, AUTHENTICATED_OR_SELECTED, SELECTED_ONLY

COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({
    # §6.1: any state
    "CAPABILITY": _command(_ANY, "RFC 3501 §6.1.1", "CAPABILITY"),
    "NOOP": _command(_ANY, "RFC 3501 §6.1.2", "NOOP"),
    "LOGOUT": _command(_ANY, "RFC 3501 §6.1.3", "LOGOUT"),
    "ID": _command(_ANY, "RFC 2971 §3.1", "ID SP (\"(\" string SP nstring *(SP string SP nstring) \")\" / NIL)"),
    # §6.2: not authenticated
    "STARTTLS": _command(_NOT_AUTH, "RFC 3501 §6.2.1", "STARTTLS", starts_tls=True),
    "AUTHENTICATE": _command(_NOT_AUTH, "RFC 3501 §6.2.2", "AUTHENTICATE SP auth-type [SP initial-response]",
                             continuation=SASL),
    "LOGIN": _command(_NOT_AUTH, "RFC 3501 §6.2.3", "LOGIN SP userid SP password"),
    # §6.3: authenticated (and selected)
    "SELECT": _command(_AUTH, "RFC 3501 §6.3.1", "SELECT SP mailbox [SP \"(\" select-params \")\"]"),
    "EXAMINE": _command(_AUTH, "RFC 3501 §6.3.2", "EXAMINE SP mailbox [SP \"(\" select-params \")\"]"),
    "CREATE": _command(_AUTH, "RFC 3501 §6.3.3", "CREATE SP mailbox"),
    "DELETE": _command(_AUTH, "RFC 3501 §6.3.4", "DELETE SP mailbox"),
    "RENAME": _command(_AUTH, "RFC 3501 §6.3.5", "RENAME SP mailbox SP mailbox"),
    "SUBSCRIBE": _command(_AUTH, "RFC 3501 §6.3.6", "SUBSCRIBE SP mailbox"),
    "UNSUBSCRIBE": _command(_AUTH, "RFC 3501 §6.3.7", "UNSUBSCRIBE SP mailbox"),
    "LIST": _command(_AUTH, "RFC 3501 §6.3.8", "LIST SP mailbox SP list-mailbox"),
    "LSUB": _command(_AUTH, "RFC 3501 §6.3.9", "LSUB SP mailbox SP list-mailbox"),
    "STATUS": _command(_AUTH, "RFC 3501 §6.3.10", "STATUS SP mailbox SP \"(\" status-att *(SP status-att) \")\""),
    "APPEND": _command(_AUTH, "RFC 3501 §6.3.11", "APPEND SP mailbox [SP flag-list] [SP date-time] SP literal"),
    "NAMESPACE": _command(_AUTH, "RFC 2342 §5", "NAMESPACE"),
    "ENABLE": _command(AUTHENTICATED_ONLY, "RFC 5161 §3.1", "ENABLE 1*(SP capability)"),
    "IDLE": _command(_AUTH, "RFC 2177 §3", "IDLE CRLF \"DONE\"", continuation=DONE),
    # §6.4: selected
    "CHECK": _command(_SELECTED, "RFC 3501 §6.4.1", "CHECK"),
    "CLOSE": _command(_SELECTED, "RFC 3501 §6.4.2", "CLOSE"),
    "UNSELECT": _command(_SELECTED, "RFC 3691 §2", "UNSELECT"),
    "EXPUNGE": _command(_SELECTED, "RFC 3501 §6.4.3", "EXPUNGE"),
    "SEARCH": _command(_SELECTED, "RFC 3501 §6.4.4", "SEARCH [SP \"CHARSET\" SP astring] 1*(SP search-key)"),
    "FETCH": _command(_SELECTED, "RFC 3501 §6.4.5", "FETCH SP sequence-set SP (\"ALL\" / \"FULL\" / \"FAST\" / "
                      "fetch-att / \"(\" fetch-att *(SP fetch-att) \")\")"),
    "STORE": _command(_SELECTED, "RFC 3501 §6.4.6", "STORE SP sequence-set SP store-att-flags"),
    "COPY": _command(_SELECTED, "RFC 3501 §6.4.7", "COPY SP sequence-set SP mailbox"),
    "MOVE": _command(_SELECTED, "RFC 6851 §3.1", "MOVE SP sequence-set SP mailbox"),
    "UID FETCH": _command(_SELECTED, "RFC 3501 §6.4.8", "UID SP FETCH SP uid-set SP fetch-atts"),
    "UID SEARCH": _command(_SELECTED, "RFC 3501 §6.4.8", "UID SP SEARCH 1*(SP search-key)"),
    "UID STORE": _command(_SELECTED, "RFC 3501 §6.4.8", "UID SP STORE SP uid-set SP store-att-flags"),
    "UID COPY": _command(_SELECTED, "RFC 3501 §6.4.8", "UID SP COPY SP uid-set SP mailbox"),
    "UID MOVE": _command(_SELECTED, "RFC 6851 §3.2", "UID SP MOVE SP uid-set SP mailbox"),
    "UID EXPUNGE": _command(_SELECTED, "RFC 4315 §2.1", "UID SP EXPUNGE SP uid-set"),
    "SORT": _command(_SELECTED, "RFC 5256 §3", "SORT SP sort-criteria SP charset 1*(SP search-key)"),
    "UID SORT": _command(_SELECTED, "RFC 5256 §3", "UID SP SORT SP sort-criteria SP charset 1*(SP search-key)"),
    "THREAD": _command(_SELECTED, "RFC 5256 §3", "THREAD SP algorithm SP charset 1*(SP search-key)"),
    "UID THREAD": _command(_SELECTED, "RFC 5256 §3", "UID SP THREAD SP algorithm SP charset 1*(SP search-key)"),
})
# Verbs in events beyond the table: DONE, the line that ends IDLE (RFC 2177 §3).
KNOWN_COMMANDS = frozenset(COMMANDS) | {"DONE"}


def allowed(verb: str, state: State) -> bool:
    """Is ``verb`` a command this server knows, allowed in ``state`` (§3)?"""
    spec = COMMANDS.get(verb)
    return spec is not None and state in spec.states


def continuation(verb: str) -> str:
    """What the client sends after a "+" to ``verb`` other than a literal: SASL, DONE or ""."""
    spec = COMMANDS.get(verb)
    return spec.extra.get("continuation", "") if spec is not None else ""


def negotiates_tls(verb: str) -> bool:
    """Is ``verb`` the command that asks for TLS (STARTTLS, §6.2.1)?"""
    spec = COMMANDS.get(verb)
    return spec is not None and bool(spec.extra.get("starts_tls"))


def starts_tls(verb: str, reply: Reply) -> bool:
    """Does ``reply``, the tagged completion of ``verb``, start the TLS negotiation (§6.2.1)?"""
    return negotiates_tls(verb) and outcome(reply) is Outcome.OK


# -- transitions (RFC 3501 §3) ---------------------------------------------------------------
TRANSITIONS = TransitionTable([
    # §6.2.2, §6.2.3: "OK - login completed, now in authenticated state"
    Transition(_NOT_AUTH, "LOGIN", Outcome.OK, State.AUTHENTICATED, "LOGIN: OK"),
    Transition(_NOT_AUTH, "AUTHENTICATE", Outcome.OK, State.AUTHENTICATED, "AUTHENTICATE: OK"),
    # §6.3.1: "OK - select completed, now in selected state"
    Transition(_AUTH, "SELECT", Outcome.OK, State.SELECTED, "SELECT: OK"),
    Transition(_AUTH, "EXAMINE", Outcome.OK, State.SELECTED, "EXAMINE: OK"),
    # §6.3.1: "if a mailbox is selected and a SELECT command that fails is attempted, no
    # mailbox is selected"; "NO - select failure, now in authenticated state".  BAD ("command
    # unknown or arguments invalid") names no state change: the command was not run (§7.1.3).
    Transition(_SELECTED, "SELECT", Outcome.FAIL, State.AUTHENTICATED, "SELECT: NO"),
    Transition(_SELECTED, "EXAMINE", Outcome.FAIL, State.AUTHENTICATED, "EXAMINE: NO"),
    # §6.4.2: "OK - close completed, now in authenticated state"; RFC 3691 §2 UNSELECT
    Transition(_SELECTED, "CLOSE", Outcome.OK, State.AUTHENTICATED, "CLOSE: OK"),
    Transition(_SELECTED, "UNSELECT", Outcome.OK, State.AUTHENTICATED, "UNSELECT: OK"),
    # §3.4: "the server MUST send an untagged BYE response and a tagged OK response to the
    # LOGOUT command before the server closes the connection"
    Transition(_ANY, "LOGOUT", Outcome.OK, State.LOGOUT, "LOGOUT: OK"),
])

# -- replies (RFC 3501 §7) -------------------------------------------------------------------
# §7.1: the status responses; with "+", the continuation request (§7.5): ``Event.code``.
STATUS = ("OK", "NO", "BAD", "BYE", "PREAUTH")
REPLY_CODES = frozenset(STATUS) | {"+"}
# §7.1.4: PREAUTH "is always untagged, and is one of three possible greetings at connection
# startup.  It indicates that the connection has already been authenticated by external means".
GREETINGS = MappingProxyType({"OK": State.NOT_AUTHENTICATED, "PREAUTH": State.AUTHENTICATED, "BYE": State.LOGOUT})
# Untagged data responses (RFC 3501 §7.2-§7.4, RFC 2342, RFC 4731, RFC 5161, RFC 5256, RFC 7162):
# ``Event.verb`` of "*" lines.
RESPONSES = frozenset({"CAPABILITY", "LIST", "LSUB", "STATUS", "SEARCH", "FLAGS", "EXISTS", "RECENT",
                       "EXPUNGE", "FETCH", "NAMESPACE", "ID", "ESEARCH", "SORT", "THREAD", "ENABLED", "VANISHED"})
# Response codes in brackets (RFC 3501 §7.1, RFC 4315, RFC 5530, RFC 7162): ``Event.response_code``.
RESPONSE_CODES = frozenset({"ALERT", "CAPABILITY", "PERMANENTFLAGS", "READ-ONLY", "READ-WRITE", "TRYCREATE",
                            "UIDNEXT", "UIDVALIDITY", "UNSEEN", "APPENDUID", "COPYUID", "TOOBIG", "NONEXISTENT",
                            "ALREADYEXISTS", "CANNOT", "SERVERBUG", "AUTHENTICATIONFAILED",
                            "AUTHORIZATIONFAILED", "BADCHARSET", "UNKNOWN-CTE", "HIGHESTMODSEQ", "MODIFIED", "CLOSED",
                            "UNAVAILABLE", "PRIVACYREQUIRED"})
# What the server advertises (RFC 3501 §7.2.1); each extension only once it is complete.
CAPABILITIES = ("IMAP4rev1", "LITERAL+", "UIDPLUS", "MOVE", "IDLE", "NAMESPACE", "ID", "UNSELECT", "ENABLE",
                "UTF8=ACCEPT", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "ESEARCH", "BINARY", "MULTIAPPEND",
                "SORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "CONDSTORE", "QRESYNC",
                "AUTH=PLAIN")
# Violation rules (``Note.rule``) found by the core and the observer; COMMON_VIOLATIONS are
# explained in knowledge/common.toml (shared with SMTP and POP3).
COMMON_VIOLATIONS = frozenset({"starttls-injection"})
VIOLATIONS = frozenset({"tag-reuse", "wrong-state", "unquoted-specials", "literal-length-mismatch", "after-logout",
                        "bare-lf", "bad-tag", "line-too-long", "incomplete-command", "too-many-errors"}) | COMMON_VIOLATIONS
# Folded blocks: literals (Kind.LITERAL) and the AUTHENTICATE response line (Kind.DATA).
DATA_VERBS = frozenset({"literal", "AUTHENTICATE"})


def outcome(reply: Reply) -> Outcome:
    """What a status response means for the command it completes (§7.1): OK done, NO failed,
    BAD not run ("command unknown or arguments invalid"), "+" go on (§7.5), BYE closing."""
    if reply.status == "+":
        return Outcome.MORE  # §7.5 command continuation request
    if reply.status == "BYE":
        return Outcome.BYE
    if reply.status == "BAD":
        return Outcome.BAD
    return Outcome.OK if reply.status in ("OK", "PREAUTH") else Outcome.FAIL


def wire(reply: Reply) -> bytes:
    """A status response on the wire: ``tag SP status SP ["[" code "]" SP] text CRLF`` (§7.1),
    ``* BYE ...`` when untagged, ``+ text`` for a continuation (§7.5)."""
    text = reply.text if isinstance(reply.text, str) else " ".join(reply.text)
    # §9: "text = 1*TEXT-CHAR", 7-bit CHARs: what a client wrote in UTF-8 and our text quotes
    # ("bad sequence set ...") goes escaped (RFC 6855 §3 adds UTF-8 to quoted strings only)
    if reply.status == "+":
        return f"+ {wire_text(text)}\r\n".encode("ascii", "backslashreplace")
    code = f"[{reply.code}] " if reply.code else ""
    return f"{reply.tag or '*'} {reply.status} {code}{wire_text(text)}\r\n".encode("ascii", "backslashreplace")


def response_code(reply: Reply) -> str:
    """The atom that names the response code (``"COPYUID"`` of ``"COPYUID 1 2 3"``), for events."""
    return reply.code.split(" ")[0].upper()


@dataclass(frozen=True, slots=True)
class ServerLine:
    """One line a server sent, read (§7): ``reply`` (its tag: a command's, "*" or "+"; its
    status: OK/NO/BAD/BYE/PREAUTH, "+" or "" for data; its [response code]) and, for untagged
    data, ``verb``: "CAPABILITY", "EXISTS" of "* 3 EXISTS", "FETCH" of "* 1 FETCH (...)"."""

    reply: Reply
    verb: str = ""


# §7.1: resp-text-code in brackets after the status: its atom (and arguments) up to "]"
_RESP_CODE = re.compile(r"^\[([^\]]*)\] ?")


def read_reply(line: bytes) -> ServerLine:
    """Read one server line (§7, §9 "response"): ``tag SP status SP [code] text``,
    ``* status ...``, ``* [n SP] data``, ``+ text``.  Lenient: a malformed line still gives
    whatever tag and first words it has (an observer judges what students' servers send)."""
    text = line.rstrip(b"\r\n").decode("ascii", "replace")
    words = text.split(" ", 2)
    tag = words[0]
    second = words[1].upper() if len(words) > 1 else ""
    rest = words[2] if len(words) > 2 else ""
    if tag == "+":
        return ServerLine(Reply("+", text[2:], tag="+"))
    if second in STATUS:
        m = _RESP_CODE.match(rest)
        code = m.group(1) if m else ""
        return ServerLine(Reply(second, rest[m.end():] if m else rest, code=code, tag=tag))
    if tag == "*" and second.isdigit() and rest:  # "* 3 EXISTS", "* 1 FETCH (...)" (§7.3, §7.4)
        return ServerLine(Reply("", text, tag="*"), rest.split(" ", 1)[0].upper().rstrip(")"))
    return ServerLine(Reply("", text, tag=tag), second if tag == "*" else "")


# -- the configuration of a server core (one frozen dataclass; CLI flags map onto it) ---------
@dataclass(frozen=True)
class ImapConfig:
    hostname: str = "lab.test"
    implementation: str = "mailtrace IMAP4rev1 lab server"  # said in the greeting
    #: RFC 3501 §5.4 autologout; 0 disables it.  Below 30 minutes only for tests and demos.
    idle_timeout: float = IDLE_TIMEOUT
    tls_available: bool = False  # offer STARTTLS (the shell has a certificate)
    max_bad_commands: int = MAX_BAD_COMMANDS
    # A classroom lab off loopback: LOGINDISABLED and no AUTH=PLAIN until STARTTLS (RFC 3501
    # §6.2.3) on a connection that is not a secure channel (loopback or TLS).
    tls_required_for_auth: bool = False
