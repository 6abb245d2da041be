"""IMAP connection states and the command table type (RFC 3501 §3).

"Once the connection between client and server is established, an IMAP4rev1 connection is
in one of four states.  The initial state is identified in the server greeting.  Most
commands are only valid in certain states.  It is a protocol error for the client to attempt
a command while the connection is in an inappropriate state, and the server will respond
with a BAD or NO (depending upon server implementation) command completion result." (§3)

    not authenticated --LOGIN/AUTHENTICATE--> authenticated --SELECT/EXAMINE--> selected
          \\                                      ^---------CLOSE / failed SELECT--/
           `-----------------LOGOUT (any state)-----------------> logout
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable


class State(str, enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"  # RFC 3501 §3.1
    AUTHENTICATED = "authenticated"  # §3.2
    SELECTED = "selected"  # §3.3
    LOGOUT = "logout"  # §3.4


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})
# ENABLE: "only valid in the authenticated state ..., before any mailbox is selected" (RFC 5161 §3.1)
AUTHENTICATED_ONLY = frozenset({State.AUTHENTICATED})


@dataclass(frozen=True)
class CommandSpec:
    states: frozenset  # where the command is allowed
    handler: Callable[[Any, Any], None]  # handler(connection, command)
    rfc: str
