"""Group commit of SMTP deliveries (servers/storejobs.py, protocols/smtp/delivery.py,
store ``deliver_many``): the deliveries to the same mailboxes that complete while their group's
previous job is being stored are stored by one job, and each 250 still means that its own
message is on disk (RFC 5321 §4.1.1.4)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path

from mailtrace.protocols.smtp.delivery import Envelope, in_memory_job
from mailtrace.servers.storejobs import run_store_job
from mailtrace.store.files import to_wire
from mailtrace.store.maildir import MaildirStore, MailboxNotFound

USERS = {"alice": "a", "bob": "b"}


def envelope(*recipients: str, queue_id: str = "1.1") -> Envelope:
    return Envelope(sender="s@x.test", recipients=recipients, helo="client.test", client="127.0.0.1:1",
                    hostname="lab.test", software="mailtrace", with_="ESMTP", queue_id=queue_id, when=1.7e9)


def test_deliver_many_fails_only_the_copies_that_fail(tmp_path: Path):
    store = MaildirStore(tmp_path / "mail", dict(USERS))
    try:
        results = store.deliver_many([("alice", b"Subject: 1\r\n\r\none\r\n"), ("mallory", b"Subject: x\r\n\r\nx\r\n"),
                                      ("bob", b"Subject: 2\r\n\r\ntwo\r\n"), ("alice", b"Subject: 3\r\n\r\nthree\r\n")])
        assert isinstance(results[1], MailboxNotFound)
        alice = store.mailbox("alice").messages()
        assert [m.uid for m in alice] == [results[0].uid, results[3].uid]
        assert results[0].uid < results[3].uid
        assert [to_wire(store.mailbox("alice").read(m.uid)) for m in alice] == [b"Subject: 1\r\n\r\none\r\n",
                                                                              b"Subject: 3\r\n\r\nthree\r\n"]
        assert [m.uid for m in store.mailbox("bob").messages()] == [results[2].uid]
        assert [list((tmp_path / "mail" / user / "tmp").iterdir()) for user in USERS] == [[], []]
    finally:
        store.close()


class HeldStore(MaildirStore):
    """The real store; a group for a user in ``hold`` waits until ``release`` is set (a mailbox
    whose uidlist lock another program holds), and every group is counted as (users, size)."""

    groups: list[tuple[tuple[str, ...], int]]
    hold: set[str]
    entered: threading.Event
    release: threading.Event

    def deliver_many(self, items):
        users = tuple(sorted({user for user, _ in items}))
        self.groups.append((users, len(items)))
        if self.hold & set(users):
            self.entered.set()
            assert self.release.wait(30)
        return super().deliver_many(items)


def held_store(tmp_path: Path, hold: set[str]) -> HeldStore:
    store = HeldStore(tmp_path / "mail", dict(USERS))
    store.groups, store.hold = [], hold
    store.entered, store.release = threading.Event(), threading.Event()
    return store


def alice_job(store, k: int):
    return in_memory_job(store, envelope("alice@lab.test", queue_id=f"1.{k}"), b"Subject: %d\r\n\r\nhi\r\n" % k)


def test_deliveries_that_come_while_their_group_is_stored_go_as_one_group(tmp_path: Path):
    store = held_store(tmp_path, {"alice"})
    try:
        async def main():
            first = asyncio.ensure_future(run_store_job(alice_job(store, 0)))
            await asyncio.get_running_loop().run_in_executor(None, store.entered.wait, 30)  # in a worker now
            later = [asyncio.ensure_future(run_store_job(alice_job(store, k))) for k in range(1, 5)]
            two = in_memory_job(store, envelope("bob@lab.test", "nobody@lab.test"), b"Subject: two\r\n\r\nhi\r\n")
            last = asyncio.ensure_future(run_store_job(two))
            await asyncio.sleep(0)
            assert not first.done() and not any(job.done() for job in later)
            store.release.set()
            return await asyncio.gather(first, *later, last)

        results = asyncio.run(main())
        # the first went alone; the four that came while it was stored, as one group; the
        # message for bob (and an unknown mailbox) was a group of its own
        assert sorted(store.groups) == [(("alice",), 1), (("alice",), 4), (("bob", "nobody"), 2)]
        alice = store.mailbox("alice").messages()
        assert [r[0][1].uid for r in results[:5]] == [m.uid for m in alice]
        assert all(r[0][0] == "alice" for r in results[:5])
        last = results[5]
        assert last[0][0] == "bob" and isinstance(last[1], MailboxNotFound)  # only that copy failed
        assert len(store.mailbox("bob").messages()) == 1
    finally:
        store.release.set()
        store.close()


def test_a_mailbox_stuck_on_its_lock_does_not_hold_up_deliveries_to_another(tmp_path: Path):
    store = held_store(tmp_path, {"alice"})
    try:
        async def main():
            stuck = asyncio.ensure_future(run_store_job(alice_job(store, 0)))
            await asyncio.get_running_loop().run_in_executor(None, store.entered.wait, 30)
            bob = in_memory_job(store, envelope("bob@lab.test"), b"Subject: for bob\r\n\r\nhi\r\n")
            result = await asyncio.wait_for(run_store_job(bob), 30)  # done while alice's is still held
            assert not stuck.done()
            store.release.set()
            return result, await stuck

        (bob,), (alice,) = asyncio.run(main())
        assert bob[0] == "bob" and [m.uid for m in store.mailbox("bob").messages()] == [bob[1].uid]
        assert alice[0] == "alice" and [m.uid for m in store.mailbox("alice").messages()] == [alice[1].uid]
    finally:
        store.release.set()
        store.close()


def test_concurrent_clients_each_get_250_for_a_message_on_disk(lab):
    """Ten smtplib clients at once: every 250 names a message that is in the Maildir."""
    queued: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def client(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", lab.port(), timeout=30) as smtp:
                smtp.ehlo()
                start.wait(30)
                for n in range(5):
                    smtp.mail("s@client.test")
                    smtp.rcpt("bob@lab.test")
                    code, text = smtp.data(b"Subject: %d.%d\r\n\r\nbody\r\n" % (k, n))
                    assert code == 250, text
                    queued.append(text.decode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(queued) == 50
    new = lab.directory / "mail" / "bob" / "new"
    subjects = sorted(to_wire(p.read_bytes()).split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for p in new.iterdir())
    assert subjects == sorted(b"%d.%d" % (k, n) for k in range(10) for n in range(5))
