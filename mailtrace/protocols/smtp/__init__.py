"""SMTP (RFC 5321, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, STARTTLS and AUTH): the spec, the
server core and the observer.

* ``spec``      states, the command table, the transition table, limits, replies, rules (data);
* ``syntax``    commands, replies, paths, line notes and redaction: read alike by core and observer;
* ``commands``  the server's handlers, one per verb, and the session they update;
* ``data``      the message body after DATA (end, dot-stuffing, violations);
* ``trace``     the Return-Path and Received headers added at delivery;
* ``server``    ``SmtpServerConnection``: the sans-I/O lab server core;
* ``observer``  ``SmtpObserver``: the spec applied to both sides of someone else's conversation.

The names the rest of mailtrace (and the knowledge sync test) use are re-exported here.
"""

from mailtrace.protocols.smtp.observer import SmtpObserver
from mailtrace.protocols.smtp.server import SmtpServerConnection
from mailtrace.protocols.smtp.spec import (
    CODES,
    COMMANDS,
    DATA_VERBS,
    DOCUMENTED_CODES,
    ENHANCED_CODES,
    IDLE_TIMEOUT,
    KNOWN_COMMANDS,
    MAX_COMMAND_LINE,
    MAX_MESSAGE_SIZE,
    MAX_RECIPIENTS,
    MAX_TEXT_LINE,
    REPLY_CODES,
    TRANSITIONS,
    VIOLATIONS,
    SmtpConfig,
    State,
    Store,
)

__all__ = [
    "CODES", "COMMANDS", "DATA_VERBS", "DOCUMENTED_CODES", "ENHANCED_CODES", "IDLE_TIMEOUT", "KNOWN_COMMANDS",
    "MAX_COMMAND_LINE", "MAX_MESSAGE_SIZE", "MAX_RECIPIENTS", "MAX_TEXT_LINE", "REPLY_CODES", "TRANSITIONS",
    "VIOLATIONS", "SmtpConfig", "SmtpObserver", "SmtpServerConnection", "State", "Store",
]
