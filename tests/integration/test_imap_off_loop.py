"""IMAP store work runs off the servers' event loop (issue #12 item 3): a session whose NOOP
must look at a mailbox whose uidlist another program has locked (Dovecot's
dovecot-uidlist.lock) waits alone; the other sessions go on."""

from __future__ import annotations

import concurrent.futures
import imaplib
import os
import socket

from test_imap_helpers import SIMPLE, USERS
from test_imap_server import RunningServer
from test_store_off_loop import wait_until


def test_a_noop_waiting_for_the_uidlist_lock_does_not_stop_other_sessions(tmp_path):
    server = RunningServer(tmp_path)
    try:
        server.store.deliver("alice", SIMPLE)
        server.store.deliver("bob", SIMPLE)
        alice = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)  # (patient: the lock is waited for)
        alice.login("alice", USERS["alice"])
        assert alice.select("INBOX")[0] == "OK"
        maildir = tmp_path / "mail" / "alice"
        # a message another program dropped in (no UID yet): looking at the mailbox must give it
        # one, under the uidlist lock, which that program still holds (a live holder: waited for)
        (maildir / "new" / "1700000000.M1P1.other").write_bytes(SIMPLE)
        lock = maildir / "dovecot-uidlist.lock"
        lock.write_text(f"{os.getpid()}:{socket.gethostname()}")

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            noop = pool.submit(alice.noop)  # RFC 3501 §6.1.2: a poll for new messages
            assert wait_until(lambda: any(e.verb == "NOOP" and e.side.value == "C" for e in list(server.sink.events)))

            bob = server.client("bob")  # the loop serves bob while alice's NOOP waits for the lock
            assert bob.select("INBOX") == ("OK", [b"1"])
            assert bob.noop()[0] == "OK"
            bob.logout()
            assert not noop.done()  # (had the loop waited, bob would have come after alice)

            lock.unlink()  # the other program lets go
            assert noop.result(30)[0] == "OK"
        assert alice.response("EXISTS")[1][-1] == b"2"  # "* 2 EXISTS" (RFC 3501 §7.3.1)
        alice.logout()
    finally:
        server.stop()


def test_a_mod_sequence_read_on_the_loop_does_not_wait_for_a_job_holding_the_folder(tmp_path):
    """Lock ordering (store/folder.py): a store job holds the folder's thread lock while it waits
    for another program's dovecot-uidlist.lock; what the loop reads of that folder meanwhile
    (here the VANISHED (EARLIER) of a QRESYNC UID FETCH, RFC 7162 §3.2.6) must not wait for it."""
    server = RunningServer(tmp_path)
    try:
        server.store.deliver("alice", SIMPLE)
        server.store.deliver("bob", SIMPLE)
        first = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
        first.login("alice", USERS["alice"])
        second = imaplib.IMAP4("127.0.0.1", server.port, timeout=60)
        second.login("alice", USERS["alice"])
        assert second.enable("QRESYNC")[0] == "OK"
        for client in (first, second):
            assert client.select("INBOX")[0] == "OK"
        maildir = tmp_path / "mail" / "alice"
        (maildir / "new" / "1700000000.M1P1.other").write_bytes(SIMPLE)
        lock = maildir / "dovecot-uidlist.lock"
        lock.write_text(f"{os.getpid()}:{socket.gethostname()}")

        def commands(verb):
            return [e for e in list(server.sink.events) if e.verb == verb and e.side.value == "C"]

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            noop = pool.submit(first.noop)  # its job waits for the lock, holding the folder's
            assert wait_until(lambda: commands("NOOP"))
            fetch = pool.submit(second.uid, "FETCH", "1:*", "(FLAGS) (CHANGEDSINCE 1 VANISHED)")
            assert wait_until(lambda: commands("UID FETCH"))

            bob = server.client("bob")  # the loop is free: bob is served while the NOOP waits
            assert bob.select("INBOX") == ("OK", [b"1"])
            bob.logout()
            assert not noop.done()  # (had the loop waited for the folder lock, bob would come last)

            lock.unlink()
            assert noop.result(30)[0] == "OK"
            assert fetch.result(30)[0] == "OK"
        first.logout()
        second.logout()
    finally:
        server.stop()
