"""The POP3 core's store jobs: the only code of the core that touches the store.

The server core (``server.py``) never calls the store itself: it hands each of these functions
(but ``in_memory``, which reads no file) to its shell as a ``Pending`` job (``protocols/base.py``), which runs it in a worker thread
(``mailtrace.servers.storejobs``) and gives the result back to the core.  So the password
check, locking and listing the maildrop (RFC 1939 §4), reading a message (RETR, TOP), the
unlinks of the UPDATE state (§6) and releasing the lock never stop the event loop, however
slow the disk or however long another program holds a lock.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from mailtrace.protocols.pop3.spec import apop_digest, dot_lines
from mailtrace.protocols.utf8mail import has_utf8_header
from mailtrace.store.model import MailboxNotFound


@dataclass
class Message:
    """One message of the frozen maildrop listing (message-number = index + 1, RFC 1939 §4)."""

    uid: int
    size: int
    deleted: bool = False
    key: str = ""  # the store's unique name for it (MessageInfo.key), when it has one


@dataclass(frozen=True)
class Refused:
    """A login store job's "no": the -ERR text and its response code (RFC 2449 §8, RFC 3206)."""

    text: str
    code: str


def login(store: Any, user: str, password: str) -> Refused | tuple[str, Any, Any, list[Message]]:
    """PASS (RFC 1939 §7): the password checked, then the maildrop opened."""
    name = known_name(store, user)
    if not store.check_password(name, password):
        return Refused("invalid user name or password", "AUTH")
    return open_maildrop(store, name)


def apop_login(store: Any, user: str, timestamp: str, digest: str) -> Refused | tuple[str, Any, Any, list[Message]]:
    """APOP (RFC 1939 §7): the digest of the greeting's timestamp and the secret compared."""
    name = known_name(store, user)
    secret = store.password(name)
    if secret is None or not hmac.compare_digest(apop_digest(timestamp, secret), digest):
        return Refused("invalid user name or digest", "AUTH")
    return open_maildrop(store, name)


def known_name(store: Any, name: str) -> str:
    """Lab user names are lower case: "USER Dave" logs in as dave (as SMTP's Dave@ is dave)."""
    if store.password(name) is None and store.password(name.lower()) is not None:
        return name.lower()
    return name


def open_maildrop(store: Any, user: str) -> Refused | tuple[str, Any, Any, list[Message]]:
    """RFC 1939 §4: lock the maildrop, then list it; (user, lock, mailbox, messages)."""
    try:
        lock = store.lock_maildrop(user)
    except Exception as exc:  # e.g. a lab user whose name cannot be a Maildir
        return Refused(f"cannot lock the maildrop: {type(exc).__name__}", "SYS/PERM")
    if lock is None:
        return Refused("maildrop already locked by another session", "IN-USE")
    try:
        mailbox = store.mailbox(user, "INBOX")
    except MailboxNotFound:  # an absent INBOX is an empty maildrop
        return user, lock, None, []
    except Exception as exc:  # RFC 1939 §4: release the lock before rejecting
        release(lock)
        return Refused(f"cannot open the maildrop: {type(exc).__name__}", "SYS/TEMP")
    try:  # a new Mailbox view is scanned as it is made (store/maildir.py): no second refresh()
        return user, lock, mailbox, [Message(info.uid, info.size, key=info.key) for info in mailbox.messages()]
    except Exception as exc:
        release(lock)
        return Refused(f"cannot open the maildrop: {type(exc).__name__}", "SYS/TEMP")


#: Not from the RFC: clients download a maildrop in order (RETR 1, RETR 2, ... or TOP n 0 for
#: each), and each store job is a hop to a worker thread and back, which costs more than reading
#: a small file.  So the job for RETR or TOP reads the message asked for and the next ones not
#: deleted, up to this many messages and octets; the core serves those from memory, once each.
READ_AHEAD_MESSAGES = 16
READ_AHEAD_OCTETS = 256 * 1024


def read_ahead(listing: list[Message]) -> list[int]:
    """The uids to read for the first message of ``listing``: it, then the next live ones within
    the bounds (the first is read whatever its size)."""
    uids, octets = [listing[0].uid], listing[0].size
    for message in listing[1:]:
        if len(uids) >= READ_AHEAD_MESSAGES or octets + message.size > READ_AHEAD_OCTETS:
            break
        if not message.deleted:
            uids.append(message.uid)
            octets += message.size
    return uids


def in_memory(mailbox: Any, uid: int) -> bytes | None:
    """The message if the store holds it in memory (``Mailbox.cached``): no file is read, so
    the core may ask on the event loop and skip a store job (a hop to a worker thread and
    back, the larger cost of a RETR of a small message).  None: read it in a job."""
    cached = getattr(mailbox, "cached", None)
    return cached(uid) if cached is not None else None


#: What RETR and TOP must know of a stored message, worked out once per message per process:
#: whether lines start with "." (to byte-stuff, ``spec.dot_lines``) and whether its header holds
#: raw UTF-8 (RFC 6856, ``utf8mail.has_utf8_header``).  A Maildir file's content never changes
#: and its unique name is never reused (the promise the store's message cache rests on,
#: store/cache.py), so a class downloading the same messages costs one pass over each, not two
#: per RETR.  A few octets per message; emptied when it holds FACTS_KEPT.
FACTS_KEPT = 100_000
_facts: dict[tuple[str, str], tuple[bool, bool]] = {}  # (folder path, unique name) -> facts


def message_facts(mailbox: Any, message: Message, data: bytes) -> tuple[bool, bool]:
    """(``spec.dot_lines(data)``, ``has_utf8_header(data)``) of ``message`` of ``mailbox``."""
    # Keyed by the folder's path, not the user's name: two stores in one process (the grader's
    # scenarios, run in parallel) may each hold a "bob" whose messages have the same unique names.
    path = getattr(mailbox, "path", None)
    if not (message.key and path is not None):  # no names to go by
        return dot_lines(data), has_utf8_header(data)
    key = (str(path), message.key)
    found = _facts.get(key)
    if found is None:
        if len(_facts) >= FACTS_KEPT:
            _facts.clear()
        found = _facts[key] = (dot_lines(data), has_utf8_header(data))
    return found


def read_messages(mailbox: Any, uids: list[int]) -> dict[int, bytes | None]:
    """Each message in wire form (None: removed meanwhile by another program)."""
    found: dict[int, bytes | None] = {}
    for uid in uids:
        try:
            found[uid] = mailbox.read(uid)
        except (KeyError, OSError):
            found[uid] = None
    return found


def remove_deleted(mailbox: Any, doomed: list[int]) -> tuple[int, int]:
    """RFC 1939 §6 UPDATE: remove the messages marked deleted; (not removed, already gone).

    A message someone else removed meanwhile (another program, an IMAP EXPUNGE) is what DELE
    asked for, so it is no failure: +OK, as Dovecot answers.  Only a message that is still
    there after the attempt makes QUIT answer "-ERR [SYS/TEMP]" (§6: "If [...] an error
    occurs [...] the server responds with a negative status indicator"; RFC 3206 §4:
    SYS/TEMP, a temporary failure; the client may try again later)."""
    if not doomed:
        return 0, 0
    try:
        removed = set(mailbox.expunge(doomed))
    except Exception:  # noqa: BLE001 - the store failed: nothing is known to be removed
        return len(doomed), 0
    missing = [uid for uid in doomed if uid not in removed]
    if not missing:
        return 0, 0
    try:
        mailbox.refresh()
        present = {m.uid for m in mailbox.messages()}
    except Exception:  # noqa: BLE001
        return len(missing), 0
    still = sum(uid in present for uid in missing)
    return still, len(missing) - still


def release(lock: Any) -> None:
    try:
        lock.release()
    except Exception:  # the lock may already be gone; releasing twice must be harmless
        pass


def messages_left(mailbox: Any, guess: int) -> int:
    """How many messages the maildrop holds after UPDATE, counted again: another session (an
    IMAP EXPUNGE) may have removed some this one never marked (``guess``: the session's own
    count, said when the store cannot be read)."""
    try:
        mailbox.refresh()
        return sum(1 for _ in mailbox.messages())
    except Exception:  # noqa: BLE001 - the count is only informative
        return guess
