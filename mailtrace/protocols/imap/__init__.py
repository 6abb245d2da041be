"""IMAP4rev1 (RFC 3501) as a sans-I/O package: lexer, parser, states, commands, connection.

    spec.py             the protocol written once: states, COMMANDS, TRANSITIONS, limits, replies,
                        the reading of a server line, every response, code and violation it can emit
    commandline.py      reading command lines: tag, verb, violations, redaction (core and observer)
    lexer.py            bytes of one command -> tokens (atoms, quoted strings, literals)
    parser.py           a cursor over tokens: astring, mailbox, sequence sets, flags, dates
    dispatch.py         a command's lines and literals -> its handler (state checks, limits)
    server.py           ImapServerConnection: framing (protocols/lines.py), responses, events
    mailboxview.py      the selected mailbox as one session sees it (sequence numbers, updates)
    commands_*.py       the handlers
    fetch.py search.py  FETCH items and SEARCH keys
    bodystructure.py    ENVELOPE, BODYSTRUCTURE, BODY[section]
    wire.py             quoting, literals, cutting a response into lines and literals
    observer.py         ImapObserver: both sides of a conversation we do not take part in
"""

from mailtrace.protocols.imap.server import ImapServerConnection
from mailtrace.protocols.imap.observer import ImapObserver
from mailtrace.protocols.imap.spec import (
    CAPABILITIES, COMMANDS, DATA_VERBS, KNOWN_COMMANDS, REPLY_CODES, RESPONSE_CODES, RESPONSES, TRANSITIONS,
    VIOLATIONS, ImapConfig, State,
)

__all__ = ["CAPABILITIES", "COMMANDS", "TRANSITIONS", "DATA_VERBS", "ImapConfig", "ImapObserver", "ImapServerConnection",
           "KNOWN_COMMANDS", "REPLY_CODES", "RESPONSES", "RESPONSE_CODES", "State", "VIOLATIONS"]
