"""Which stored messages an event touched: the link between a dialogue and a mailbox.

The lecture's push and pull on one page: SMTP delivers a message (push), POP3 and IMAP
sessions read, flag, copy, move and delete it (pull).  The server cores know which message
each command touched; they say so on the reply that reports it (SMTP's 250 after DATA, POP3's
+OK to RETR/TOP/DELE, IMAP's tagged OK) as ``MessageRef`` records in the event's ``messages``
field.  They survive a JSON Lines transcript unchanged, and the web view (``mailtrace.web``)
follows them from a message to its sessions and back.

A message is named as the store names it: user, mailbox and UID (RFC 3501 §2.3.1.1: unique
and never reused within a mailbox of one UIDVALIDITY), plus the Maildir key when known.
"""

from __future__ import annotations

import enum

from mailtrace.transcript.event import Event, MessageRef

__all__ = ["Action", "MessageRef", "refs_of"]


class Action(str, enum.Enum):
    DELIVERED = "delivered"  # SMTP: accepted with 250 and written to the Maildir
    READ = "read"  # POP3 RETR/TOP, IMAP FETCH
    FLAGGED = "flagged"  # IMAP STORE (flags changed)
    COPIED = "copied"  # IMAP COPY (the source message)
    MOVED = "moved"  # IMAP MOVE (the source message, gone from its mailbox)
    DELETED = "deleted"  # POP3 DELE (+ QUIT), IMAP EXPUNGE
    ARRIVED = "arrived"  # IMAP COPY/MOVE (the new message in the destination, in the source's order)


def refs_of(event: Event) -> list[MessageRef]:
    """The message references an event carries (none for most events)."""
    return list(event.messages)
