"""IMAP4rev1 written down once (RFC 3501 §3 and §6): states, commands, transitions, limits.

Theory of operation.  RFC 3501 §3: "Once the connection between client and server is
established, an IMAP4rev1 connection is in one of four states.  The initial state is
identified in the server greeting.  Most commands are only valid in certain states.  It is a
protocol error for the client to attempt a command while the connection is in an
inappropriate state, and the server will respond with a BAD or NO (depending upon server
implementation) command completion result."  This server answers BAD.

    not authenticated --LOGIN/AUTHENTICATE: OK--> authenticated --SELECT/EXAMINE: OK--> selected
           |                                       ^------ CLOSE, UNSELECT: OK ------------/
           |                                       ^------ SELECT/EXAMINE: NO or BAD -----/
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
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from mailtrace.protocols.base import wire_text
from mailtrace.protocols.spec import ANY_VERB, CommandSpec, Outcome, Reply, Transition, TransitionTable

__all__ = ["ANY_VERB", "COMMANDS", "CommandSpec", "ImapConfig", "Outcome", "Reply", "State", "TRANSITIONS", "outcome",
           "wire"]


class State(str, enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"  # RFC 3501 §3.1
    AUTHENTICATED = "authenticated"  # §3.2
    SELECTED = "selected"  # §3.3
    LOGOUT = "logout"  # §3.4


# -- limits ----------------------------------------------------------------------------------
# RFC 7162 §4: "a server implementation ... should accept a command line of at least 8000
# octets"; we accept 64 KiB per line.
MAX_LINE = 64 * 1024
# The largest literal accepted (an APPENDed message).  RFC 3501 sets no limit; a larger
# synchronizing literal gets NO [TOOBIG] (RFC 5530 §3) instead of the "+", so not a single
# octet of it is sent (RFC 3501 §7.5 lets the server refuse the continuation).
MAX_LITERAL = 64 * 1024 * 1024
# Before LOGIN a literal can only be a user name or a password: RFC 7888 §5's LITERAL- size
# ("non-synchronizing literals ... MUST NOT be larger than 4096 bytes") is plenty, and an
# unauthenticated client cannot make the server buffer more.
MAX_LITERAL_BEFORE_LOGIN = 4096
# All the literals of one command together (e.g. MULTIAPPEND-like abuse).
MAX_COMMAND = MAX_LITERAL + MAX_LINE
# An APPEND literal at least this large is written to the Maildir's tmp/ as it arrives
# (``store.spool``) instead of being held in memory; the transcript keeps its first
# LITERAL_PREVIEW octets (and its size).
SPOOL_LITERAL = 256 * 1024
LITERAL_PREVIEW = 16 * 1024
# RFC 3501 §5.4: "If a server has an inactivity autologout timer, the duration of that timer
# MUST be at least 30 minutes."
AUTOLOGOUT_SECONDS = 30 * 60
# Remembered tags for the tag-reuse check (bounded, so a long session cannot grow it forever).
MAX_REMEMBERED_TAGS = 10_000
# What an observer keeps of one line (a proxy must not buffer an endless line).
MAX_OBSERVED_LINE = MAX_LINE
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
NOT_AUTHENTICATED = State.NOT_AUTHENTICATED
ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})  # §6.4: the authenticated state commands are valid here too
SELECTED = frozenset({State.SELECTED})
# ENABLE: "only valid in the authenticated state ..., before any mailbox is selected" (RFC 5161 §3.1)
AUTHENTICATED_ONLY = frozenset({State.AUTHENTICATED})


def _handler(path: str) -> Callable[[Any, Any], None]:
    """The handler ``module.function`` of ``commands_*.py``, imported when first run (so the
    spec stays light: the observer reads it without loading the server core)."""
    module, name = path.rsplit(".", 1)

    def run(conn: Any, cmd: Any) -> None:
        getattr(importlib.import_module(f"mailtrace.protocols.imap.{module}"), name)(conn, cmd)

    run.__qualname__ = run.__name__ = path
    return run


def _command(states: frozenset, rfc: str, syntax: str, handler: str) -> CommandSpec:
    return CommandSpec(states=states, rfc=rfc, syntax=syntax, handler=_handler(handler))


COMMANDS: dict[str, CommandSpec] = {
    # §6.1: any state
    "CAPABILITY": _command(ANY, "RFC 3501 §6.1.1", "CAPABILITY", "commands_session.capability"),
    "NOOP": _command(ANY, "RFC 3501 §6.1.2", "NOOP", "commands_session.noop"),
    "LOGOUT": _command(ANY, "RFC 3501 §6.1.3", "LOGOUT", "commands_session.logout"),
    "ID": _command(ANY, "RFC 2971 §3.1", "ID SP (\"(\" string SP nstring *(SP string SP nstring) \")\" / NIL)",
                   "commands_session.id_"),
    # §6.2: not authenticated
    "STARTTLS": _command(NOT_AUTH, "RFC 3501 §6.2.1", "STARTTLS", "commands_session.starttls"),
    "AUTHENTICATE": _command(NOT_AUTH, "RFC 3501 §6.2.2", "AUTHENTICATE SP auth-type [SP initial-response]",
                             "commands_session.authenticate"),
    "LOGIN": _command(NOT_AUTH, "RFC 3501 §6.2.3", "LOGIN SP userid SP password", "commands_session.login"),
    # §6.3: authenticated (and selected)
    "SELECT": _command(AUTH, "RFC 3501 §6.3.1", "SELECT SP mailbox [SP \"(\" select-params \")\"]",
                       "commands_mailbox.select"),
    "EXAMINE": _command(AUTH, "RFC 3501 §6.3.2", "EXAMINE SP mailbox [SP \"(\" select-params \")\"]",
                        "commands_mailbox.examine"),
    "CREATE": _command(AUTH, "RFC 3501 §6.3.3", "CREATE SP mailbox", "commands_mailbox.create"),
    "DELETE": _command(AUTH, "RFC 3501 §6.3.4", "DELETE SP mailbox", "commands_mailbox.delete"),
    "RENAME": _command(AUTH, "RFC 3501 §6.3.5", "RENAME SP mailbox SP mailbox", "commands_mailbox.rename"),
    "SUBSCRIBE": _command(AUTH, "RFC 3501 §6.3.6", "SUBSCRIBE SP mailbox", "commands_mailbox.subscribe"),
    "UNSUBSCRIBE": _command(AUTH, "RFC 3501 §6.3.7", "UNSUBSCRIBE SP mailbox", "commands_mailbox.unsubscribe"),
    "LIST": _command(AUTH, "RFC 3501 §6.3.8", "LIST SP mailbox SP list-mailbox", "commands_list.list_"),
    "LSUB": _command(AUTH, "RFC 3501 §6.3.9", "LSUB SP mailbox SP list-mailbox", "commands_list.lsub"),
    "STATUS": _command(AUTH, "RFC 3501 §6.3.10", "STATUS SP mailbox SP \"(\" status-att *(SP status-att) \")\"",
                       "commands_mailbox.status"),
    "APPEND": _command(AUTH, "RFC 3501 §6.3.11", "APPEND SP mailbox [SP flag-list] [SP date-time] SP literal",
                       "commands_mailbox.append"),
    "NAMESPACE": _command(AUTH, "RFC 2342 §5", "NAMESPACE", "commands_session.namespace"),
    "ENABLE": _command(AUTHENTICATED_ONLY, "RFC 5161 §3.1", "ENABLE 1*(SP capability)", "commands_session.enable"),
    "IDLE": _command(AUTH, "RFC 2177 §3", "IDLE CRLF \"DONE\"", "commands_session.idle"),
    # §6.4: selected
    "CHECK": _command(SELECTED, "RFC 3501 §6.4.1", "CHECK", "commands_selected.check"),
    "CLOSE": _command(SELECTED, "RFC 3501 §6.4.2", "CLOSE", "commands_selected.close"),
    "UNSELECT": _command(SELECTED, "RFC 3691 §2", "UNSELECT", "commands_selected.unselect"),
    "EXPUNGE": _command(SELECTED, "RFC 3501 §6.4.3", "EXPUNGE", "commands_selected.expunge"),
    "SEARCH": _command(SELECTED, "RFC 3501 §6.4.4", "SEARCH [SP \"CHARSET\" SP astring] 1*(SP search-key)",
                       "commands_selected.do_search"),
    "FETCH": _command(SELECTED, "RFC 3501 §6.4.5", "FETCH SP sequence-set SP (\"ALL\" / \"FULL\" / \"FAST\" / "
                      "fetch-att / \"(\" fetch-att *(SP fetch-att) \")\")", "commands_selected.do_fetch"),
    "STORE": _command(SELECTED, "RFC 3501 §6.4.6", "STORE SP sequence-set SP store-att-flags",
                      "commands_selected.do_store"),
    "COPY": _command(SELECTED, "RFC 3501 §6.4.7", "COPY SP sequence-set SP mailbox", "commands_selected.copy"),
    "MOVE": _command(SELECTED, "RFC 6851 §3.1", "MOVE SP sequence-set SP mailbox", "commands_selected.move"),
    "UID FETCH": _command(SELECTED, "RFC 3501 §6.4.8", "UID SP FETCH SP uid-set SP fetch-atts",
                          "commands_selected.do_fetch"),
    "UID SEARCH": _command(SELECTED, "RFC 3501 §6.4.8", "UID SP SEARCH 1*(SP search-key)",
                           "commands_selected.do_search"),
    "UID STORE": _command(SELECTED, "RFC 3501 §6.4.8", "UID SP STORE SP uid-set SP store-att-flags",
                          "commands_selected.do_store"),
    "UID COPY": _command(SELECTED, "RFC 3501 §6.4.8", "UID SP COPY SP uid-set SP mailbox", "commands_selected.copy"),
    "UID MOVE": _command(SELECTED, "RFC 6851 §3.2", "UID SP MOVE SP uid-set SP mailbox", "commands_selected.move"),
    "UID EXPUNGE": _command(SELECTED, "RFC 4315 §2.1", "UID SP EXPUNGE SP uid-set", "commands_selected.expunge"),
    "SORT": _command(SELECTED, "RFC 5256 §3", "SORT SP sort-criteria SP charset 1*(SP search-key)",
                     "commands_selected.do_sort"),
    "UID SORT": _command(SELECTED, "RFC 5256 §3", "UID SP SORT SP sort-criteria SP charset 1*(SP search-key)",
                         "commands_selected.do_sort"),
    "THREAD": _command(SELECTED, "RFC 5256 §3", "THREAD SP algorithm SP charset 1*(SP search-key)",
                       "commands_selected.do_thread"),
    "UID THREAD": _command(SELECTED, "RFC 5256 §3", "UID SP THREAD SP algorithm SP charset 1*(SP search-key)",
                           "commands_selected.do_thread"),
}


def allowed(verb: str, state: State) -> bool:
    """Is ``verb`` a command this server knows, allowed in ``state`` (§3)?"""
    spec = COMMANDS.get(verb)
    return spec is not None and state in spec.states


# -- transitions (RFC 3501 §3) ---------------------------------------------------------------
TRANSITIONS = TransitionTable([
    # §6.2.2, §6.2.3: "OK - login completed, now in authenticated state"
    Transition(NOT_AUTH, "LOGIN", Outcome.OK, State.AUTHENTICATED, "LOGIN: OK"),
    Transition(NOT_AUTH, "AUTHENTICATE", Outcome.OK, State.AUTHENTICATED, "AUTHENTICATE: OK"),
    # §6.3.1: "OK - select completed, now in selected state"
    Transition(AUTH, "SELECT", Outcome.OK, State.SELECTED, "SELECT: OK"),
    Transition(AUTH, "EXAMINE", Outcome.OK, State.SELECTED, "EXAMINE: OK"),
    # §6.3.1: "if a mailbox is selected and a SELECT command that fails is attempted, no
    # mailbox is selected"; "NO - select failure, now in authenticated state"
    Transition(SELECTED, "SELECT", Outcome.FAIL, State.AUTHENTICATED, "SELECT: NO or BAD"),
    Transition(SELECTED, "EXAMINE", Outcome.FAIL, State.AUTHENTICATED, "EXAMINE: NO or BAD"),
    # §6.4.2: "OK - close completed, now in authenticated state"; RFC 3691 §2 UNSELECT
    Transition(SELECTED, "CLOSE", Outcome.OK, State.AUTHENTICATED, "CLOSE: OK"),
    Transition(SELECTED, "UNSELECT", Outcome.OK, State.AUTHENTICATED, "UNSELECT: OK"),
    # §3.4: "the server MUST send an untagged BYE response and a tagged OK response to the
    # LOGOUT command before the server closes the connection"
    Transition(ANY, "LOGOUT", Outcome.OK, State.LOGOUT, "LOGOUT: OK"),
])

# -- replies (RFC 3501 §7.1) -----------------------------------------------------------------
STATUS = ("OK", "NO", "BAD", "BYE", "PREAUTH")
# §7.1.4: PREAUTH "is always untagged, and is one of three possible greetings at connection
# startup.  It indicates that the connection has already been authenticated by external means".
GREETINGS = {"OK": State.NOT_AUTHENTICATED, "PREAUTH": State.AUTHENTICATED, "BYE": State.LOGOUT}


def outcome(reply: Reply) -> Outcome:
    """What a status response means for the command it completes (§7.1)."""
    if reply.status == "+":
        return Outcome.MORE  # §7.5 command continuation request
    if reply.status == "BYE":
        return Outcome.BYE
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
    return reply.code.split(" ")[0]


# -- the configuration of a server core (one frozen dataclass; CLI flags map onto it) ---------
@dataclass(frozen=True)
class ImapConfig:
    hostname: str = "lab.test"
    software: str = "mailtrace IMAP4rev1 lab server"  # said in the greeting
    #: RFC 3501 §5.4 autologout; 0 disables it.  Below 30 minutes only for tests and demos.
    idle_timeout: float = AUTOLOGOUT_SECONDS
    tls_available: bool = False  # offer STARTTLS (the shell has a certificate)
    # A classroom lab off loopback: LOGINDISABLED and no AUTH=PLAIN until STARTTLS (RFC 3501
    # §6.2.3) on a connection that is not a secure channel (loopback or TLS).
    tls_required_for_auth: bool = False
