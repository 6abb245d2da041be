"""The store's value types and errors, shared by every module of ``mailtrace.store``.

A message in a mailbox is described by a ``MessageInfo``: an immutable snapshot of its unique
identifier, size, flags and dates, as IMAP (RFC 3501 §2.3) and POP3 (RFC 1939 §7, UIDL) need
them.  The message text itself is read on demand with ``Mailbox.read``.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base class of the store's errors (servers map them to NO / -ERR)."""


class MailboxNotFound(StoreError):
    """No such user or mailbox (IMAP: NO [TRYCREATE] or NO [NONEXISTENT])."""


class MailboxExists(StoreError):
    """CREATE or RENAME onto a name that already exists (RFC 3501 §6.3.3)."""


class InvalidMailboxName(StoreError, ValueError):
    """A mailbox or user name that is empty, too long, holds control characters, or could
    leave the store ("../x", "/etc", "~root", "a/../../b"); also names that may not be used
    for the operation asked (DELETE INBOX, RFC 3501 §6.3.4)."""


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a mailbox, as of the last refresh of the mailbox it came from."""

    uid: int  # stable across sessions and restarts (RFC 3501 §2.3.1.1), never reused
    key: str  # Maildir unique name, without the ":2,FLAGS" info
    size: int  # octets of the WIRE form (CRLF line endings) = what RETR / BODY[] send
    flags: frozenset[str]  # \Seen \Answered \Flagged \Deleted \Draft and keywords
    internaldate: float  # epoch seconds: delivery time (the file's mtime)
    recent: bool  # the file was still in new/ when the mailbox was scanned
