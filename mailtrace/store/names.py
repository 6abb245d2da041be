"""Mailbox and user names: validation, and the mapping onto Maildir++ directories.

Layout (Maildir++, as Courier and Dovecot use it): a user's INBOX is the Maildir
``<root>/<user>/{cur,new,tmp}`` and every other mailbox is a sibling Maildir whose directory
is the mailbox name with a leading dot, ``<root>/<user>/.Work.Sub/``.  The hierarchy
delimiter is therefore "." (RFC 3501 §5.1: "the hierarchy delimiter ... is returned by
LIST").  Names are stored as the client sends them: IMAP clients send modified UTF-7
(RFC 3501 §5.1.3), as Dovecot stores them on disk.

RFC 3501 §5.1: "The case-insensitive mailbox name INBOX is a special name reserved to mean
'the primary mailbox for this user on this server'."  Every other name is case-sensitive.

A name from the network must never reach outside the user's directory, so everything that
could be a path trick is refused with ``InvalidMailboxName`` before any path is built: "/"
and "\\" (path separators), NUL and control characters, empty hierarchy levels (which is how
"." and ".." would sneak in), a leading "~" (home-directory expansion in some tools), and the
IMAP wildcards "*" and "%" (RFC 3501 §6.3.8: they could never be LISTed unambiguously).
"""

from __future__ import annotations

import re

from mailtrace.store.model import InvalidMailboxName

INBOX = "INBOX"
HIERARCHY_DELIMITER = "."  # Maildir++: folder ".A.B" is mailbox "A.B"

# A directory entry is at most 255 bytes on Linux (NAME_MAX); the folder directory is the
# name plus one leading dot, and we keep a margin for the temporary names used by RENAME.
MAX_MAILBOX_NAME = 200  # octets of UTF-8
MAX_USER_NAME = 64  # octets; a user name is one directory name under the store root

_FORBIDDEN = frozenset("/\\*%")
# \w is Unicode-aware: a lab user may be "josé" (SMTPUTF8 addresses, RFC 6531 §3.3)
_USER_RE = re.compile(r"\w[\w.+-]*\Z")


def validate_user(user: str) -> str:
    """Return ``user`` if it is a safe single directory name, else raise InvalidMailboxName."""
    if not isinstance(user, str) or not user:
        raise InvalidMailboxName("empty user name")
    if len(user.encode("utf-8", "surrogatepass")) > MAX_USER_NAME:
        raise InvalidMailboxName("user name too long")
    if not _USER_RE.match(user):
        raise InvalidMailboxName(f"invalid user name {user!r}")
    return user


def canonical_mailbox(name: str) -> str:
    """Validate ``name`` and return its canonical spelling ("inbox" -> "INBOX").

    A first hierarchy level spelled "inbox" in any case is canonicalised too, so that
    "inbox.Drafts" and "INBOX.Drafts" are one mailbox, as in Dovecot.
    """
    if not isinstance(name, str) or not name:
        raise InvalidMailboxName("empty mailbox name")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMailboxName("mailbox name is not valid Unicode") from None
    if len(encoded) > MAX_MAILBOX_NAME:
        raise InvalidMailboxName(f"mailbox name longer than {MAX_MAILBOX_NAME} octets")
    for ch in name:
        if ch in _FORBIDDEN or ord(ch) < 0x20 or ord(ch) == 0x7F or 0x80 <= ord(ch) < 0xA0:
            raise InvalidMailboxName(f"character {ch!r} not allowed in a mailbox name")
    if name.startswith("~"):
        raise InvalidMailboxName("a mailbox name may not start with '~'")
    levels = name.split(HIERARCHY_DELIMITER)
    if any(level == "" for level in levels):
        raise InvalidMailboxName(
            f"empty hierarchy level in {name!r} (leading, trailing or doubled "
            f"{HIERARCHY_DELIMITER!r})")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return HIERARCHY_DELIMITER.join(levels)


def folder_dirname(name: str) -> str:
    """The directory (relative to the user's Maildir) of a canonical mailbox name:
    "" for INBOX, ".Name" otherwise."""
    return "" if name == INBOX else "." + name


def mailbox_from_dirname(dirname: str) -> str | None:
    """The mailbox of a Maildir++ folder directory name, or None if it is not one."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        name = canonical_mailbox(dirname[1:])
    except InvalidMailboxName:
        return None
    return None if name == INBOX else name
