"""IMAP4rev1 (RFC 3501) as a sans-I/O package: lexer, parser, states, commands, connection.

    spec.py             the protocol written once: states, COMMANDS, TRANSITIONS, limits, replies
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
    vocabulary.py       every response, response code and violation the code can emit
"""

from mailtrace.protocols.imap.server import CAPABILITIES, ImapServerConnection
from mailtrace.protocols.imap.observer import ImapObserver
from mailtrace.protocols.imap.spec import COMMANDS, TRANSITIONS, ImapConfig, State
from mailtrace.protocols.imap.vocabulary import (
    COMMAND_VERBS, DATA_VERBS, REPLY_CODES, RESPONSE_CODES, RESPONSES, VIOLATIONS,
)

# For tests/test_knowledge.py: verbs documented beyond the table (DONE ends IDLE, RFC 2177).
KNOWN_COMMANDS = COMMAND_VERBS - set(COMMANDS)

__all__ = ["CAPABILITIES", "COMMANDS", "TRANSITIONS", "COMMAND_VERBS", "DATA_VERBS", "ImapConfig", "ImapObserver", "ImapServerConnection",
           "KNOWN_COMMANDS", "REPLY_CODES", "RESPONSES", "RESPONSE_CODES", "State", "VIOLATIONS"]
