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
