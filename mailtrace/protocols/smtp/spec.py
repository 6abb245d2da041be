"""SMTP as data (RFC 5321): states, commands, the transition table, limits, replies, rules.

Theory of operation
-------------------
    "An SMTP session is initiated when a client opens a connection to a server and the
    server responds with an opening message."                                  (RFC 5321 §3.1)
    "Once the server has sent the greeting (welcoming) message and the client has received
    it, the client normally sends the EHLO command to the server"                       (§3.2)
    "There are three steps to SMTP mail transactions.  The transaction starts with a MAIL
    command that gives the sender identification. [...] A series of one or more RCPT
    commands follows, giving the receiver information.  Then, a DATA command initiates
    transfer of the mail data and is terminated by the "end of mail" data indicator, which
    also confirms the transaction."                                                     (§3.3)

§4.1.4 fixes the order: "A session that will contain mail transactions MUST first be
initialized by the use of the EHLO command"; "The MAIL command ... begins a mail transaction"
and is not allowed inside one; RCPT follows MAIL; DATA follows an accepted RCPT.  Those positions are
the ``State`` values below.  ``COMMANDS`` says in which states each verb is allowed (any other
state gets "503 Bad sequence of commands", listed in §4.2.2 and §4.2.3, and among the replies
to MAIL, RCPT and DATA in §4.3.2) and ``TRANSITIONS`` says where
the session goes when a command is answered: in state S, verb V answered with a reply of
class O (``outcome``: 2xx OK, 3xx MORE, 4xx/5xx FAIL, 221/421 BYE) leads to state T.  The
server core changes state only by looking its own reply up there; the observer (proxy, pcap,
the grader judging a student's server) looks up the reply it saw; the course's state diagram
(``knowledge/diagrams/transitions.toml``) is checked against the same rows.

The lecture groups the states into three phases, *handshake*, *message transfer* and
*closing* (``knowledge/smtp.toml``, ``states.<state>.phase``).  Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Protocol

from mailtrace.protocols.base import wire_text
from mailtrace.protocols.spec import (
    ANY_VERB, CommandSpec, Outcome, Reply, Transition, TransitionTable, command_row,
)

PROTOCOL = "smtp"


class State(str, enum.Enum):
    """Where an SMTP session is (the value is what ``Event.state`` holds)."""

    GREETING = "greeting"  # connection open, greeting not yet sent          (handshake)
    GREETED = "greeted"  # 220 sent: waiting for HELO / EHLO                  (handshake)
    READY = "ready"  # HELO/EHLO accepted: no mail transaction yet            (handshake)
    AUTH = "auth"  # an AUTH exchange is under way (334 sent)               (handshake)
    MAIL = "mail"  # MAIL accepted: waiting for RCPT                        (transfer)
    RCPT = "rcpt"  # at least one RCPT accepted: more RCPT or DATA          (transfer)
    DATA = "data"  # 354 sent: reading the message up to CRLF.CRLF          (transfer)
    DONE = "done"  # a transaction ended (250/552/451): MAIL again or QUIT  (transfer)
    CLOSED = "closed"  # 221 or 421 sent: the server closes                 (closing)


# --- Limits, each with the rule it comes from ------------------------------------------------
MAX_COMMAND_LINE = 512  # §4.5.3.1.4: "The maximum total length of a command line including the
#                         command word and the <CRLF> is 512 octets."
MAX_TEXT_LINE = 1000  # §4.5.3.1.6: "The maximum total length of a text line including the <CRLF>
#                       is 1000 octets (not counting the leading dot duplicated for transparency)."
MAX_LOCAL_PART = 64  # §4.5.3.1.1: "The maximum total length of a user name or other local-part is 64 octets."
MAX_DOMAIN = 255  # §4.5.3.1.2: "The maximum total length of a domain name or number is 255 octets."
MAX_PATH = 256  # §4.5.3.1.3: "The maximum total length of a reverse-path or forward-path is 256
#                 octets (including the punctuation and element separators)."
MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # advertised with SIZE (RFC 1870); §4.5.3.1.7: at least 64K
MAX_RECIPIENTS = 100  # §4.5.3.1.8: "The minimum total number of recipients that MUST be buffered
#                       is 100 recipients."  More get 452 (§4.5.3.1.10).
IDLE_TIMEOUT = 300.0  # §4.5.3.2.7: "An SMTP server SHOULD have a timeout of at least 5 minutes
#                       while it is awaiting the next command from the sender."
MAX_AUTH_LINE = 12288  # RFC 4954 §4: a SASL response line may be up to 12288 octets
MAX_BAD_COMMANDS = 20  # not from the RFC: bad commands (5xx to the client's mistakes) before 421 (Postfix: 20)
DATA_READ_LIMIT = 1 << 40  # in DATA the core scans chunks itself: the line reader must not cut
TRANSCRIPT_KEEP = 64 * 1024  # octets of an oversize or spooled body kept in the transcript event

#: How long a line the core reads in each state (the message body is scanned in bulk).
LINE_LIMIT = {State.DATA: DATA_READ_LIMIT, State.AUTH: MAX_AUTH_LINE}


def line_limit(state: State) -> int:
    return LINE_LIMIT.get(state, MAX_COMMAND_LINE)


# --- Commands (RFC 5321 §4.1.1; the order of §4.1.4) ------------------------------------------
#: States in which the server reads command lines (no message, no SASL exchange).
COMMAND_STATES = frozenset({State.GREETED, State.READY, State.MAIL, State.RCPT, State.DONE})
#: After HELO/EHLO, outside a mail transaction: MAIL ("The MAIL command ... begins a mail
#: transaction", §4.1.4) and AUTH (RFC 4954 §4: "The AUTH command is not permitted during a mail
#: transaction").
NO_TRANSACTION = frozenset({State.READY, State.DONE})
#: STARTTLS: outside a mail transaction, before HELO/EHLO too (after it the client starts over
#: with EHLO, RFC 3207 §4.2).
OUTSIDE_TRANSACTION = frozenset({State.GREETED}) | NO_TRANSACTION

def command(states, rfc: str, syntax: str, *, starts_tls: bool = False, closes: bool = False) -> CommandSpec:
    """One row of the command table (``spec.command_row``); SMTP's facts in ``extra``, under the
    keys POP3 uses for the same facts: ``starts_tls`` (a 220 reply starts TLS, RFC 3207 §4) and
    ``closes`` (once answered, the server closes the connection: QUIT, §4.1.1.10)."""
    return command_row(states, rfc, syntax, starts_tls=starts_tls, closes=closes)


COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({
    "HELO": command(COMMAND_STATES, "RFC 5321 §4.1.1.1", "HELO <domain>"),
    "EHLO": command(COMMAND_STATES, "RFC 5321 §4.1.1.1", "EHLO <domain>"),
    "MAIL": command(NO_TRANSACTION, "RFC 5321 §4.1.1.2",
                    "MAIL FROM:<reverse-path> [SIZE=<n>] [BODY=7BIT|8BITMIME] [SMTPUTF8]"),
    "RCPT": command({State.MAIL, State.RCPT}, "RFC 5321 §4.1.1.3", "RCPT TO:<forward-path>"),
    "DATA": command({State.RCPT}, "RFC 5321 §4.1.1.4", "DATA, then the message, then a line with only '.'"),
    "RSET": command(COMMAND_STATES, "RFC 5321 §4.1.1.5", "RSET"),
    "NOOP": command(COMMAND_STATES, "RFC 5321 §4.1.1.9", "NOOP [<string>]"),
    "QUIT": command(COMMAND_STATES, "RFC 5321 §4.1.1.10", "QUIT", closes=True),
    "HELP": command(COMMAND_STATES, "RFC 5321 §4.1.1.8", "HELP [<command>]"),
    "VRFY": command(COMMAND_STATES, "RFC 5321 §4.1.1.6", "VRFY <user or mailbox>"),
    "EXPN": command(COMMAND_STATES, "RFC 5321 §4.1.1.7", "EXPN <mailing list>"),
    "STARTTLS": command(OUTSIDE_TRANSACTION, "RFC 3207 §4", "STARTTLS", starts_tls=True),
    "AUTH": command(NO_TRANSACTION, "RFC 4954 §4", "AUTH PLAIN|LOGIN [<initial-response>]"),
})

#: Verbs of RFC 821/5321 and extensions the lab knows but does not implement: 502 (§4.2.4).
NOT_IMPLEMENTED = frozenset({"TURN", "ETRN", "ATRN", "BDAT", "SEND", "SOML", "SAML"})
#: Every verb this module recognises (each has a knowledge entry): ``COMMANDS`` plus the ones
#: named beyond it (here the known-but-unimplemented ones, answered 502), as in POP3.
KNOWN_COMMANDS = frozenset(COMMANDS) | NOT_IMPLEMENTED
#: RFC 2920 §3.1 (and RFC 3207 §4.2, RFC 4954 §4): these must be the last command of a group.
MUST_END_GROUP = frozenset({"EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "QUIT", "NOOP", "STARTTLS", "AUTH"})
#: After these the reply decides what the client's next bytes are: a message (354), a SASL
#: response (334) or a TLS handshake (220, RFC 3207 §4).  An observer waits for that reply.
REPLY_DECIDES_NEXT = frozenset({"DATA", "AUTH", "STARTTLS"})
AUTH_MECHANISMS = ("PLAIN", "LOGIN")  # RFC 4954 §4; plaintext: acceptable on loopback or TLS

#: Pseudo-verbs of the transition table: the greeting answers no command, and the line holding
#: only "." (§4.1.1.4) is what the reply after the message answers.
GREETING = ""
END_OF_DATA = "."

#: The text of a 503 by (verb, state) or (verb, None: any state) (§4.1.4; GREETED: "send HELO/EHLO first").
SEQUENCE_ERRORS = {
    ("MAIL", None): "Error: nested MAIL command",
    ("RCPT", None): "Error: need MAIL command",
    ("DATA", State.MAIL): "Error: need RCPT command",
    ("DATA", None): "Error: need MAIL command",
    ("STARTTLS", None): "Error: STARTTLS not allowed during a mail transaction",
    ("AUTH", None): "Error: AUTH not allowed during a mail transaction",
}

# --- Transitions -----------------------------------------------------------------------------
OK, MORE, FAIL, BYE = Outcome.OK, Outcome.MORE, Outcome.FAIL, Outcome.BYE
_ALL = frozenset(State)

TRANSITIONS = TransitionTable([
    Transition(frozenset({State.GREETING}), GREETING, OK, State.GREETED, "220 greeting"),  # §3.1
    # §4.1.4: for an EHLO later in the session the server "MUST clear all buffers and reset the
    # state exactly as if a RSET command had been issued"; refused, it "MUST stay in the same state"
    Transition(COMMAND_STATES, "HELO", OK, State.READY, "HELO: 250"),
    Transition(COMMAND_STATES, "EHLO", OK, State.READY, "EHLO: 250"),
    # RFC 3207 §4.2: "the server MUST discard any knowledge obtained from the client"
    Transition(OUTSIDE_TRANSACTION, "STARTTLS", OK, State.GREETED, "STARTTLS: 220"),
    Transition(NO_TRANSACTION, "AUTH", MORE, State.AUTH, "AUTH: 334"),  # RFC 4954 §4
    Transition(frozenset({State.AUTH}), "AUTH", OK, State.READY, "base64 line: 235"),
    Transition(frozenset({State.AUTH}), "AUTH", FAIL, State.READY, "base64 line: 535 / 501"),
    Transition(NO_TRANSACTION, "MAIL", OK, State.MAIL, "MAIL FROM: 250"),
    Transition(frozenset({State.MAIL, State.RCPT}), "RCPT", OK, State.RCPT, "RCPT TO: 250"),
    Transition(frozenset({State.RCPT}), "DATA", MORE, State.DATA, "DATA: 354"),
    # §4.1.1.4: processing the end of mail data "consumes the information in the reverse-path
    # buffer, the forward-path buffer, and the mail data buffer, and on the completion of this
    # command these buffers are cleared": accepted (250) or not (552, 451), the transaction is over
    Transition(frozenset({State.DATA}), END_OF_DATA, OK, State.DONE, "message, then '.': 250"),
    Transition(frozenset({State.DATA}), END_OF_DATA, FAIL, State.DONE, "message, then '.': 552 / 451"),
    # §4.1.1.5: RSET aborts the transaction; before HELO/EHLO there is nothing to go back to
    Transition(COMMAND_STATES - {State.GREETED}, "RSET", OK, State.READY, "RSET: 250"),
    # §4.1.1.10 QUIT: 221; §4.2.2: 421 "may be a reply to any command if the service knows it must shut down"
    Transition(_ALL - {State.CLOSED}, ANY_VERB, BYE, State.CLOSED, "QUIT: 221, or 421 to anything"),
])


_FIRST_DIGIT = {"2": OK, "3": MORE}


def outcome(reply: Reply | str) -> Outcome:
    """What a reply (or a reply code) means for the command it answers (§4.2.1: the first digit)."""
    code = reply if isinstance(reply, str) else reply.status
    if code in ("221", "421"):  # §4.2.2: "closing transmission channel"
        return BYE
    return _FIRST_DIGIT.get(code[:1], FAIL)


def starts_tls(verb: str, result: Outcome) -> bool:
    """Whether this reply starts TLS: a 2xx (220) to a command whose row says ``starts_tls``
    (STARTTLS, RFC 3207 §4: "After receiving a 220 response to a STARTTLS command, the client
    MUST start the TLS negotiation"); the core and the observer both ask here."""
    spec = COMMANDS.get(verb)
    return spec is not None and spec.extra["starts_tls"] and result is OK


def expected_state(state: State, verb: str) -> State:
    """Where ``verb`` leads from ``state`` if the server accepts it (2xx, else 3xx): what an
    observer shows on a command before its reply comes."""
    after = TRANSITIONS.next_state(state, verb, OK)
    return after if after != state else TRANSITIONS.next_state(state, verb, MORE)


# --- Replies (§4.2) ---------------------------------------------------------------------------
def wire_lines(reply: Reply) -> list[bytes]:
    """The lines of ``reply`` as sent: "every line, except the last, begin[s] with the reply code,
    followed immediately by a hyphen ... The last line will begin with the reply code, followed
    immediately by <SP>" (§4.2.1); the enhanced status code (RFC 3463, advertised with
    ENHANCEDSTATUSCODES, RFC 2034 §3) starts the text of every line."""
    texts = (reply.text,) if isinstance(reply.text, str) else reply.text
    prefix = f"{reply.code} " if reply.code else ""
    last = len(texts) - 1
    return [f"{reply.status}{' ' if i == last else '-'}{prefix}{wire_text(text)}".rstrip(" ").encode("utf-8")
            + b"\r\n" for i, text in enumerate(texts)]


def wire(reply: Reply) -> bytes:
    return b"".join(wire_lines(reply))


#: Every reply code the server core can send (knowledge must explain each one).
REPLY_CODES = frozenset({"214", "220", "221", "235", "250", "252", "334", "354", "421", "451", "452", "500",
                         "501", "502", "503", "504", "535", "538", "550", "552", "553", "554", "555"})
#: Common codes the lab never sends but a student meets elsewhere (proxy, pcap): documented too.
DOCUMENTED_CODES = frozenset({"251", "421", "450", "451", "452", "550", "551", "552", "553", "554", "555"})
#: Every enhanced status code (RFC 3463) the server core can send (knowledge table "codes").
ENHANCED_CODES = frozenset({"2.0.0", "2.1.0", "2.1.5", "2.7.0", "4.3.0", "4.3.2", "4.4.2", "4.5.3", "4.7.0",
                            "5.1.1", "5.1.3", "5.1.7", "5.3.4", "5.5.1", "5.6.7", "5.5.2", "5.5.4", "5.7.0",
                            "5.7.1", "5.7.8"})
#: EHLO keywords explained in the knowledge ("extensions" table): what this server offers and the
#: common ones a student meets on real servers (proxy, pcap).
EHLO_KEYWORDS = frozenset({"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "HELP", "STARTTLS", "AUTH",
                           "SMTPUTF8", "CHUNKING", "BINARYMIME", "DSN", "ETRN", "VRFY", "EXPN", "DELIVERBY",
                           "REQUIRETLS"})
#: Every code an event carries: knowledge tables "codes" (enhanced) and "extensions" (EHLO keywords).
CODES = ENHANCED_CODES | EHLO_KEYWORDS
#: Verbs of DATA events: the message body and AUTH response lines.
DATA_VERBS = frozenset({"DATA", "AUTH"})

# --- Violation rules (knowledge: smtp.toml [violations], common.toml) --------------------------
BARE_LF = "bare-lf"  # §2.3.8
BARE_CR = "bare-cr"  # §2.3.8
LINE_TOO_LONG = "line-too-long"  # §4.5.3.1.4 / §4.5.3.1.6
SPACE_AFTER_COLON = "space-after-colon"  # §3.3, §4.1.2
MISSING_BRACKETS = "missing-brackets"  # §4.1.2
BEFORE_GREETING = "before-greeting"  # §3.1, §4.3.2
NO_PIPELINING = "no-pipelining"  # RFC 2920 §3: only with PIPELINING may a client not wait
PIPELINING_GROUP = "pipelining-group"  # RFC 2920 §3.1, RFC 3207 §4.2: must end a group
EIGHT_BIT = "8bit-without-8bitmime"  # RFC 6152 §3, RFC 5321 §2.4
EIGHT_BIT_HEADER = "8bit-header-without-smtputf8"  # RFC 6532 §3, RFC 6531 §3.2: 8BITMIME is the body only
NUL_IN_DATA = "nul-in-data"  # RFC 5322 §2.1, §3.5 text; RFC 2045 §2.7, §2.8: no NULs in 7bit/8bit data
CONTROL_IN_DATA = "control-in-data"  # RFC 5322 §3.5: control characters in a body are "discouraged" (info)
CONTROL_IN_HEADER = "control-in-header"  # RFC 5322 §2.2: a field body is printable US-ASCII and WSP; §4: obsolete
LEFT_WITHOUT_MAIL = "left-without-transaction"  # greeted, then left: often a missing extension
DATA_NO_RECIPIENT = "data-no-recipient"  # §4.1.1.4, §3.3
CLEARTEXT_AUTH = "cleartext-auth"  # RFC 4954 §4: PLAIN/LOGIN need a protected channel
STARTTLS_INJECTION = "starttls-injection"  # RFC 3207 §4.2 (knowledge: common.toml)
BAD_REPLY = "bad-reply"  # §4.2 (observer: a server line that is no reply)

#: Every violation rule the server core or the observer can record.
VIOLATIONS = frozenset({BARE_LF, BARE_CR, LINE_TOO_LONG, SPACE_AFTER_COLON, MISSING_BRACKETS, BEFORE_GREETING,
                        NO_PIPELINING, PIPELINING_GROUP, EIGHT_BIT, DATA_NO_RECIPIENT, CLEARTEXT_AUTH, BAD_REPLY,
                        STARTTLS_INJECTION, EIGHT_BIT_HEADER, LEFT_WITHOUT_MAIL, NUL_IN_DATA, CONTROL_IN_DATA,
                        CONTROL_IN_HEADER})


def data_without_recipient(state: State, rcpt_in_group: bool) -> bool:
    """DATA with no accepted RCPT is a client's mistake (§4.1.1.4, §3.3) unless an RCPT went in
    the same pipelined group: the client could not know it would be refused, and RFC 2920 §3.1
    has it send DATA and read 554 (every real MTA does so)."""
    return state is not State.RCPT and not rcpt_in_group


# --- Configuration and the store the core needs --------------------------------------------
class Store(Protocol):
    """What the core needs from the Maildir store (``mailtrace.store.maildir.MaildirStore``)."""

    def has_user(self, user: str) -> bool: ...

    def check_password(self, user: str, password: str) -> bool: ...

    def deliver(self, user: str, message: bytes, mailbox: str = "INBOX"): ...


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str = "lab.test"
    local_domains: tuple[str, ...] = ("lab.test", "localhost")
    max_message_size: int = MAX_MESSAGE_SIZE
    max_recipients: int = MAX_RECIPIENTS
    idle_timeout: float = IDLE_TIMEOUT
    max_bad_commands: int = MAX_BAD_COMMANDS
    tls_available: bool = False  # offer STARTTLS (a certificate is configured)
    implementation: str = "mailtrace"  # named in the greeting and in Received: (RFC 5321 §4.4)
    postmaster: str = ""  # the user who gets mail for <postmaster> (RFC 5321 §4.5.1)
    # A classroom lab off loopback: AUTH (plaintext passwords) only on a secure channel (TLS
    # or loopback); not advertised before STARTTLS (RFC 4954 §6, 538 5.7.11).
    tls_required_for_auth: bool = False
