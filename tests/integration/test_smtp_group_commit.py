"""Group commit of SMTP deliveries (servers/storejobs.py, protocols/smtp/delivery.py,
store ``deliver_many``): the deliveries that complete in one turn of the event loop are stored
by one job, and each 250 still means that its own message is on disk (RFC 5321 §4.1.1.4)."""

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


class CountingStore(MaildirStore):
    """The real store, counting how many times it was asked to deliver a group."""

    groups: list[int]

    def deliver_many(self, items):
        self.groups.append(len(items))
        return super().deliver_many(items)


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


def test_jobs_started_in_one_turn_are_stored_as_one_group(tmp_path: Path):
    store = CountingStore(tmp_path / "mail", dict(USERS))
    store.groups = []
    try:
        jobs = [in_memory_job(store, envelope("alice@lab.test", queue_id=f"1.{k}"), b"Subject: %d\r\n\r\nhi\r\n" % k)
                for k in range(5)]
        jobs.append(in_memory_job(store, envelope("bob@lab.test", "nobody@lab.test"), b"Subject: two\r\n\r\nhi\r\n"))

        async def main():
            return await asyncio.gather(*(run_store_job(job) for job in jobs))

        results = asyncio.run(main())
        assert store.groups == [7]  # five messages for alice, two copies of the last one: one job
        alice = store.mailbox("alice").messages()
        assert [r[0][1].uid for r in results[:5]] == [m.uid for m in alice]
        assert all(r[0][0] == "alice" for r in results[:5])
        last = results[5]
        assert last[0][0] == "bob" and isinstance(last[1], MailboxNotFound)  # only that copy failed
        assert len(store.mailbox("bob").messages()) == 1
    finally:
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
