"""Store work runs off the servers' event loop: a maildrop whose uidlist is locked by another
program (Dovecot's dovecot-uidlist.lock) holds up that login only, never the other sessions."""

from __future__ import annotations

import os
import poplib
import socket
import threading

from test_pop3_server import MSG, USERS, RunningServer


def test_a_login_waiting_for_the_uidlist_lock_does_not_stop_other_sessions(tmp_path):
    server = RunningServer(tmp_path)
    try:
        server.store.deliver("bob", MSG)
        alice = tmp_path / "mail" / "alice"
        server.store.deliver("alice", MSG)
        # a message another program dropped in (no UID yet): alice's login must assign one, under the lock
        (alice / "new" / "1700000000.M1P1.other").write_bytes(MSG)
        lock = alice / "dovecot-uidlist.lock"
        lock.write_text(f"{os.getpid()}:{socket.gethostname()}")  # a live holder: waited for, not broken

        alice_done = threading.Event()
        result: dict = {}

        def alice_session() -> None:
            try:
                pop = poplib.POP3("127.0.0.1", server.port, timeout=30)
                pop.user("alice")
                pop.pass_(USERS["alice"])
                result["alice"] = pop.stat()
                pop.quit()
            except Exception as exc:  # reported by the assertion below
                result["alice"] = exc
            finally:
                alice_done.set()

        waiting = threading.Thread(target=alice_session)
        waiting.start()
        assert wait_until(lambda: any(e.verb == "PASS" for e in list(server.sink.events)))  # alice is logging in

        bob = server.client("bob")  # the loop serves bob while alice's login waits for the lock
        assert bob.stat()[0] == 1
        bob.quit()
        assert not alice_done.is_set(), result  # (had the loop waited, bob would have come after alice)

        lock.unlink()  # the other program lets go
        waiting.join(30)
        assert result["alice"][0] == 2
    finally:
        server.stop()


def wait_until(condition, limit: int = 2000) -> bool:
    """Poll ``condition`` (bounded: ``limit`` tries, 10 ms apart)."""
    stop = threading.Event()
    for _ in range(limit):
        if condition():
            return True
        stop.wait(0.01)
    return False
