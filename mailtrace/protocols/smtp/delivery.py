"""Delivering an accepted message: the trace headers, then the store (RFC 5321 §4.4, §6.1).

Theory of operation
-------------------
    "When an SMTP server receives a message for delivery or further processing, it MUST
    insert trace ("time stamp" or "Received") information at the beginning of the message
    content"                                                                   (§4.4)
    "When the receiver-SMTP accepts a piece of mail (by sending a "250 OK" message in
    response to DATA), it is accepting responsibility for delivering or relaying the
    message."                                                                  (§6.1)

Each recipient gets its own copy, headed by Return-Path and a Received line ``for`` it.  The
core hands the shell a job (``Pending``) that stores every copy; the 250 is sent only when the
job has returned, i.e. when the store has fsync'd the files.

A small message is kept in memory until the final dot.  A large one (past ``SPOOL_THRESHOLD``)
is not: :class:`SpooledMessage` has each copy written to the recipient's Maildir ``tmp/`` as the
octets arrive (``store.spool``, the same spool an IMAP APPEND uses), dot-stuffing removed
(§4.5.2), and the last job only publishes the files by rename after an fsync.  So eight clients
sending 50 MB each do not take the server's memory with them.  The core itself never writes:
it gathers at most ``SPOOL_FLUSH`` octets and hands their writing to the shell as a job
(``Pending``), and reads no more input until that job has returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mailtrace.protocols.smtp.data import unstuff_after_line_ends
from mailtrace.protocols.smtp.spec import Store
from mailtrace.protocols.smtp.trace import HeaderBreak, trace_headers, with_header_break

#: Past this many octets the message goes to tmp/ files instead of memory (as IMAP APPEND does).
SPOOL_THRESHOLD = 256 * 1024
#: A spooled message's octets gathered in memory before they are handed over to be written
#: (one worker-thread hop per this many octets; the same order as SPOOL_THRESHOLD).
SPOOL_FLUSH = 256 * 1024


@dataclass(frozen=True)
class Envelope:
    """What the trace headers of one message say (§4.4), fixed when the message starts to be kept."""

    sender: str
    recipients: tuple[str, ...]  # "bob@lab.test", user names already resolved and lower-cased
    helo: str
    client: str
    hostname: str
    software: str
    with_: str  # ESMTP, ESMTPSA, UTF8SMTPS... (RFC 3848, RFC 6531 §4.3)
    queue_id: str
    when: float

    def headers(self, recipient: str) -> bytes:
        return trace_headers(sender=self.sender, recipient=recipient, helo=self.helo, client=self.client,
                             hostname=self.hostname, software=self.software, with_=self.with_,
                             queue_id=self.queue_id, when=self.when)


def mailbox_user(recipient: str) -> str:
    return recipient.split("@", 1)[0].lower()


def deliver_job(store: Store, envelope: Envelope, copies: dict[str, bytes]) -> Callable[[], list]:
    """The job that stores one copy per recipient (``copies``: recipient -> message bytes or
    spool token); its result is a list of (user, MessageInfo) or the exception of each copy."""
    def job() -> list:
        results: list = []
        for rcpt in envelope.recipients:
            user = mailbox_user(rcpt)
            try:
                results.append((user, store.deliver(user, copies[rcpt])))
            except Exception as exc:  # the store failed: the client is told to retry (451)
                results.append(exc)
        return results

    return job


class InMemoryDelivery:
    """The job of a message held in memory: one copy per recipient (see ``deliver_job``).

    Group commit: the shell may run the deliveries to the same mailboxes that completed
    while the group's previous job was being stored as ONE job (``run_group``,
    servers/storejobs.py): one hand-over to a worker thread, one uidlist update and one
    directory fsync per mailbox for all of them
    (``store.deliver_many``).  Each job's result, and so each 250, still comes only once its
    own copies are on disk."""

    def __init__(self, store: Store, envelope: Envelope, content: bytes) -> None:
        self.store, self.envelope, self.content = store, envelope, content
        # jobs on the same store for the same mailboxes may run as one group
        self.group = (store, tuple(sorted({mailbox_user(rcpt) for rcpt in envelope.recipients})))

    def copies(self) -> list[tuple[str, bytes]]:
        """(user, message bytes) of each recipient, trace headers first (§4.4)."""
        return [(mailbox_user(rcpt), self.envelope.headers(rcpt) + self.content) for rcpt in self.envelope.recipients]

    def __call__(self) -> list:
        return self.run_group([self])[0]

    @staticmethod
    def run_group(jobs: list["InMemoryDelivery"]) -> list[list]:
        """The results of ``jobs`` (all on one store), each as ``job()`` would give it."""
        store = jobs[0].store
        per_job = [job.copies() for job in jobs]
        deliver_many = getattr(store, "deliver_many", None)
        if deliver_many is None:  # a store without group commit: one delivery at a time
            return [deliver_job(store, job.envelope, dict(zip(job.envelope.recipients, (m for _, m in copies))))()
                    for job, copies in zip(jobs, per_job)]
        flat = deliver_many([item for copies in per_job for item in copies])
        results, at = [], 0
        for copies in per_job:
            results.append([r if isinstance(r, Exception) else (user, r)
                            for (user, _), r in zip(copies, flat[at:at + len(copies)])])
            at += len(copies)
        return results


def in_memory_job(store: Store, envelope: Envelope, message: bytes) -> Callable[[], list]:
    """A message held in memory, dot-stuffing already removed."""
    return InMemoryDelivery(store, envelope, with_header_break(message))  # a hand-typed message may have no header section


class SpooledMessage:
    """One large message written to each recipient's tmp/ while it arrives.

    ``start`` is the beginning of the body (as sent, dot-stuffed) that was in memory when the
    message crossed the threshold; ``take`` gets every later chunk, in order.  Nothing here
    touches the disk in the core's thread: the octets are gathered, and the writing is done by
    the jobs ``write_job`` (when ``due``), ``job`` (at the final dot) and ``discard_job``, which
    the shell runs one after the other in a worker thread (the core waits for each).  Any store
    error is kept and reported by ``job`` (451), never raised into the core."""

    def __init__(self, store: Store, envelope: Envelope, start: bytes) -> None:
        self.store, self.envelope = store, envelope
        self.spools: dict[str, object] = {}
        self.failed: Exception | None = None
        self._opened = False
        self._at_line_start = True  # for §4.5.2: a stuffed dot may open the next chunk
        self._header = HeaderBreak()  # a hand-typed message may have no header section
        self._gathered = bytearray()
        self.take(start)

    def _unstuff(self, chunk: bytes) -> bytes:
        """§4.5.2: "If the first character is a period and there are other characters on the
        line, the first character is deleted" (across chunk boundaries)."""
        if self._at_line_start and chunk.startswith(b"."):
            out = chunk[1:]
        else:
            out = chunk
        self._at_line_start = chunk.endswith(b"\n")
        return unstuff_after_line_ends(out)

    def take(self, chunk: bytes) -> None:
        """The next octets of the body, as sent (kept until a job writes them)."""
        self._gathered += self._header.feed(self._unstuff(chunk))

    @property
    def due(self) -> bool:
        """Enough gathered: the core should hand over a ``write_job`` now."""
        return len(self._gathered) >= SPOOL_FLUSH

    def _hand_over(self) -> bytes:
        data = bytes(self._gathered)
        self._gathered.clear()
        return data

    def write_job(self) -> Callable[[], None]:
        """The job that writes what was gathered so far (the first one creates the files)."""
        data = self._hand_over()
        return lambda: self._write(data)

    def _write(self, data: bytes) -> None:
        """(In the worker thread.)"""
        if self.failed is not None:
            return
        try:
            if not self._opened:
                self._opened = True
                for rcpt in self.envelope.recipients:
                    spool = self.store.spool(mailbox_user(rcpt))  # type: ignore[attr-defined]
                    self.spools[rcpt] = spool
                    spool.write(self.envelope.headers(rcpt))
            for spool in self.spools.values():
                spool.write(data)  # type: ignore[attr-defined]
        except Exception as exc:  # disk full, a Maildir removed under us...
            self.failed = exc

    def job(self) -> Callable[[], list]:
        """The job at the final dot: write the rest, close the files and publish them (rename
        after fsync, in the store); its result is that of ``deliver_job``."""
        rest = self._hand_over() + self._header.end()

        def job() -> list:
            self._write(rest)
            try:
                if self.failed is None:
                    try:
                        copies = {rcpt: spool.finish() for rcpt, spool in self.spools.items()}  # type: ignore[attr-defined]
                    except Exception as exc:
                        self.failed = exc
                if self.failed is not None:
                    return [self.failed]
                return deliver_job(self.store, self.envelope, copies)()
            finally:
                self.discard()  # what a failed copy left in tmp/ (a delivered one was renamed)

        return job

    def discard_job(self) -> Callable[[], None]:
        """The message will not be delivered (cut short, too big): the job that removes its files."""
        self._gathered.clear()
        return self.discard

    def discard(self) -> None:
        """(In the worker thread.)  Remove the files."""
        for spool in self.spools.values():
            try:
                spool.discard()  # type: ignore[attr-defined]
            except OSError:
                pass
        self.spools.clear()
