"""POP3 (RFC 1939, with CAPA from RFC 2449 and STLS from RFC 2595): spec, server core, observer.

* ``spec``      states, commands, the transition table, limits, replies, violations (data);
* ``server``    ``Pop3ServerConnection``: the sans-I/O lab server core;
* ``observer``  ``Pop3Observer``: parses both sides of someone else's conversation.
* ``maildrop``  the store jobs the server core hands to its shell as ``Pending`` (every store call).

The names the rest of mailtrace (and the knowledge sync test) use are re-exported here.
"""

from mailtrace.protocols.pop3.observer import Pop3Observer
from mailtrace.protocols.pop3.server import HANDLERS, Pop3ServerConnection
from mailtrace.protocols.pop3.spec import (
    CAPABILITIES,
    COMMANDS,
    CONTINUATION,
    DATA_VERBS,
    DOCUMENTED_CODES,
    KNOWN_COMMANDS,
    OBSERVED_COMMANDS,
    PROTOCOL,
    REPLY_CODES,
    RESPONSE_CODES,
    TRANSITIONS,
    VIOLATIONS,
    CommandSpec,
    Multiline,
    Pop3Config,
    State,
    apop_digest,
    make_timestamp,
    uidl_of,
)

__all__ = [
    "CAPABILITIES", "COMMANDS", "CONTINUATION", "DATA_VERBS", "DOCUMENTED_CODES", "KNOWN_COMMANDS",
    "OBSERVED_COMMANDS", "HANDLERS", "PROTOCOL", "REPLY_CODES", "RESPONSE_CODES", "TRANSITIONS", "VIOLATIONS",
    "CommandSpec", "Multiline", "Pop3Config", "Pop3Observer", "Pop3ServerConnection", "State",
    "apop_digest", "make_timestamp", "uidl_of",
]
