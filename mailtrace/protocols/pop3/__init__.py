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
    OBSERVED_COMMANDS,
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

#: DATA events the server and the observer emit (their ``verb``): the multi-line bodies, and
#: the client's SASL response lines (AUTH, observer only).
DATA_VERBS = frozenset(name for name, spec in COMMANDS.items() if spec.extra["multiline"] is not Multiline.NEVER) | {"AUTH"}
#: For the knowledge sync test: commands documented beyond the server's table (the observer
#: knows them), and reply codes explained though the lab server never sends them.
KNOWN_COMMANDS = frozenset(OBSERVED_COMMANDS)
DOCUMENTED_CODES = frozenset({CONTINUATION})

__all__ = [
    "CAPABILITIES", "COMMANDS", "CONTINUATION", "DATA_VERBS", "DOCUMENTED_CODES", "KNOWN_COMMANDS",
    "OBSERVED_COMMANDS", "HANDLERS", "REPLY_CODES", "RESPONSE_CODES", "TRANSITIONS", "VIOLATIONS",
    "CommandSpec", "Multiline", "Pop3Config", "Pop3Observer", "Pop3ServerConnection", "State",
    "apop_digest", "make_timestamp", "uidl_of",
]
