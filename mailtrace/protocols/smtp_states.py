"""SMTP states, limits, configuration and the shape of the command table.

Theory of operation
-------------------
RFC 5321 §4.1.4 fixes the order of commands: "The EHLO or HELO command ... MUST be issued
before the first MAIL command", "MAIL ... starts a mail transaction", RCPT follows MAIL, DATA
follows at least one successful RCPT, and "the end of mail data indicator ... ends the
transaction".  Those positions are the ``State`` values below; the command table
(``smtp_commands.COMMANDS``) lists for every verb the states in which it is accepted, and
any other state gets 503 "bad sequence of commands" (§4.2.4).  The lecture's three phases
(handshake, message transfer, closing) are attached to the states in ``knowledge/smtp.toml``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Protocol

PROTOCOL = "smtp"

# --- Limits ----------------------------------------------------------------------------------
MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # advertised with SIZE (RFC 1870); §4.5.3.1.7: >= 64K
MAX_RECIPIENTS = 100  # §4.5.3.1.8: at least 100 MUST be buffered; more get 452
IDLE_TIMEOUT = 300.0  # §4.5.3.2.7: "a timeout of at least 5 minutes" awaiting a command
MAX_ERRORS = 20  # bad commands before 421 (a flood of garbage is no client; Postfix: 20)
MAX_AUTH_LINE = 12288  # RFC 4954 §4: a SASL response line may be up to 12288 octets
DATA_READ_LIMIT = 1 << 40  # in DATA the core scans chunks itself: the line reader must not cut
TRANSCRIPT_KEEP = 64 * 1024  # octets of an oversize body kept in the transcript event

#: RFC 2920 §3.1 (and RFC 3207 §4.2, RFC 4954 §4): these must be the last command of a group.
MUST_END_GROUP = frozenset({"EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "QUIT", "NOOP", "STARTTLS", "AUTH"})
#: Verbs of RFC 821/5321 and extensions the lab knows but does not implement: 502 (§4.2.4).
NOT_IMPLEMENTED = frozenset({"TURN", "ETRN", "ATRN", "BDAT", "SEND", "SOML", "SAML"})



class State(enum.Enum):
    GREETING = "greeting"  # connection open, greeting not yet sent          (handshake)
    GREETED = "greeted"  # 220 sent: waiting for HELO / EHLO                  (handshake)
    READY = "ready"  # HELO/EHLO accepted: no mail transaction yet            (handshake)
    AUTH = "auth"  # an AUTH exchange is under way (334 sent)               (handshake)
    MAIL = "mail"  # MAIL accepted: waiting for RCPT                        (transfer)
    RCPT = "rcpt"  # at least one RCPT accepted: more RCPT or DATA          (transfer)
    DATA = "data"  # 354 sent: reading the message up to CRLF.CRLF          (transfer)
    DONE = "done"  # a transaction ended (250/552/451): MAIL again or QUIT  (transfer)
    CLOSED = "closed"  # 221 or 421 sent: the server closes                 (closing)


NO_TRANSACTION = frozenset({State.READY, State.DONE})
LINE_STATES = frozenset(set(State) - {State.DATA, State.AUTH, State.CLOSED, State.GREETING})


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
    max_errors: int = MAX_ERRORS
    tls_available: bool = False  # offer STARTTLS (a certificate is configured)
    software: str = "mailtrace"
    postmaster: str = ""  # the user who gets mail for <postmaster> (RFC 5321 §4.5.1)
    # A classroom lab off loopback: AUTH (plaintext passwords) only on a secure channel (TLS
    # or loopback); not advertised before STARTTLS (RFC 4954 §6, 538 5.7.11).
    tls_required_for_auth: bool = False


@dataclass(frozen=True)
class Spec:
    """One row of the command table."""

    states: frozenset  # states in which the command is accepted (others: 503)
    handler: Callable[[Any, str], Any]  # (connection, argument) -> Reply | None
    syntax: str


