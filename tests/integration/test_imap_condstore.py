"""CONDSTORE (RFC 7162 §3.1): mod-sequences that grow with every flag change, survive a
restart, and drive FETCH (CHANGEDSINCE), STORE (UNCHANGEDSINCE), SEARCH MODSEQ, STATUS
HIGHESTMODSEQ; through the core, imaplib across a restart, and imapclient."""

from __future__ import annotations

import re

import pytest

from test_imap_helpers import Client, make_store
from test_imap_server import RunningServer, ok


def _modseq(reply: bytes, seq: int) -> int:
    m = re.search(rb"\* %d FETCH \(.*MODSEQ \((\d+)\)" % seq, reply)
    assert m, reply
    return int(m.group(1))


@pytest.fixture
def client(tmp_path):
    store = make_store(tmp_path)
    for n in range(3):
        store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % n)
    c = Client(store)
    c.login()
    return c


def test_condstore_fetch_store_search_status(client):
    reply = client.cmd("s1 SELECT INBOX (CONDSTORE)")
    highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", reply).group(1))
    reply = client.cmd("f1 FETCH 1:3 (MODSEQ)")
    before = [_modseq(reply, n) for n in (1, 2, 3)]
    assert max(before) == highest
    reply = client.cmd("t1 STORE 2 +FLAGS (\\Seen)")  # flag changes carry MODSEQ now (§3.2)
    after = _modseq(reply, 2)
    assert after > highest and b"FLAGS (\\Seen" in reply
    reply = client.cmd("f2 UID FETCH 1:* (UID) (CHANGEDSINCE %d)" % highest)  # §3.1.4.1
    assert b"* 2 FETCH (UID 2 MODSEQ (%d))" % after in reply and b"* 1 FETCH" not in reply
    reply = client.cmd("f4 FETCH 1:3 (FLAGS) (CHANGEDSINCE %d)" % highest)
    assert b"* 2 FETCH" in reply and b"* 1 FETCH" not in reply and b"* 3 FETCH" not in reply
    # STORE (UNCHANGEDSINCE): 2 changed since `highest`, so only 1 and 3 get the flag (§3.1.3)
    reply = client.cmd("t2 STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)" % highest)
    assert b"t2 OK [MODIFIED 2]" in reply
    assert re.search(rb"\* 1 FETCH \(MODSEQ \(\d+\)\)", reply) and b"* 2 FETCH" not in reply
    assert b"\\Flagged" not in client.cmd("f5 FETCH 2 FLAGS")
    reply = client.cmd("r1 SEARCH MODSEQ %d" % (after + 1))
    m = re.search(rb"\* SEARCH 1 3 \(MODSEQ (\d+)\)", reply)
    assert m, reply
    first = _modseq(client.cmd("f7 FETCH 1 MODSEQ"), 1)
    assert b'* ESEARCH (TAG "r2") MIN 1 MODSEQ %d' % first in client.cmd(  # §3.2 of RFC 4731
        'r2 SEARCH RETURN (MIN) MODSEQ "/flags/\\\\seen" all %d' % after)
    assert b"* SEARCH\r\n" in client.cmd("r3 SEARCH MODSEQ %d" % (int(m.group(1)) + 1))
    assert b"HIGHESTMODSEQ %d)" % int(m.group(1)) in client.cmd("u1 STATUS INBOX (HIGHESTMODSEQ)")
    assert b"t3 BAD" in client.cmd("t3 STORE 1 (NOSUCH 1) +FLAGS (\\Seen)")
    assert b"f6 BAD" in client.cmd("f6 FETCH 1 FLAGS (CHANGEDSINCE 0)")


def test_enable_condstore_and_news_from_another_session(tmp_path):
    store = make_store(tmp_path)
    store.deliver("alice", b"Subject: x\r\n\r\nbody\r\n")
    a, b = Client(store), Client(store)
    for c in (a, b):
        c.login()
    assert b"* ENABLED CONDSTORE\r\n" in a.cmd("e1 ENABLE CONDSTORE")
    assert b"[HIGHESTMODSEQ " in a.cmd("s1 SELECT INBOX")
    assert b"[HIGHESTMODSEQ " not in b.cmd("s1 SELECT INBOX")  # only after an enabling command
    b.cmd("t1 STORE 1 +FLAGS (\\Answered)")
    assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \([^)]*\) MODSEQ \(\d+\)\)", a.cmd("n1 NOOP"))


def test_modseq_survives_a_restart(tmp_path):
    srv = RunningServer(tmp_path)
    try:
        srv.store.deliver("bob", b"Subject: x\r\n\r\nbody\r\n")
        m = srv.client("bob")
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", "(\\Seen)"))
        typ, data = m._simple_command("STATUS", "INBOX", "(HIGHESTMODSEQ)")
        before = m.untagged_responses.pop("STATUS")[-1]
        m.logout()
    finally:
        srv.stop()
    srv = RunningServer(tmp_path)
    try:
        m = srv.client("bob")
        typ, data = m._simple_command("STATUS", "INBOX", "(HIGHESTMODSEQ)")
        assert m.untagged_responses.pop("STATUS")[-1] == before
        ok(m.select("INBOX"))
        ok(m.store("1", "+FLAGS", "(\\Flagged)"))
        m._simple_command("STATUS", "INBOX", "(HIGHESTMODSEQ)")
        later = m.untagged_responses.pop("STATUS")[-1]
        assert int(re.search(rb"HIGHESTMODSEQ (\d+)", later).group(1)) > int(
            re.search(rb"HIGHESTMODSEQ (\d+)", before).group(1))
        m.logout()
    finally:
        srv.stop()


def test_imapclient_condstore(tmp_path):
    imapclient = pytest.importorskip("imapclient")
    srv = RunningServer(tmp_path)
    try:
        for n in range(3):
            srv.store.deliver("bob", b"Subject: %d\r\n\r\nbody\r\n" % n)
        c = imapclient.IMAPClient("127.0.0.1", port=srv.port, ssl=False, timeout=10)
        c.login("bob", "bob")
        assert b"CONDSTORE" in c.capabilities()
        assert c.enable("CONDSTORE") == [b"CONDSTORE"]
        info = c.select_folder("INBOX", readonly=False)
        highest = c.folder_status("INBOX", ["HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"]
        c.add_flags([2], [b"\\Seen"])
        changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=["CHANGEDSINCE %d" % highest])
        assert list(changed) == [2] and changed[2][b"MODSEQ"][0] > highest
        assert info[b"EXISTS"] == 3
        c.logout()
    finally:
        srv.stop()


def test_select_while_selected_says_closed(client):
    client.cmd("s1 SELECT INBOX")
    reply = client.cmd("s2 EXAMINE INBOX")
    assert reply.startswith(b"* OK [CLOSED]")  # RFC 7162 §3.2.11: the boundary comes first
    assert b"[CLOSED]" not in client.cmd("s3 UNSELECT")  # "no need" on CLOSE/UNSELECT


def test_qresync_vanished_and_quick_resync(tmp_path):
    store = make_store(tmp_path)
    for n in range(5):
        store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % n)
    a = Client(store)
    a.login()
    assert b"s0 BAD" in a.cmd("s0 SELECT INBOX (QRESYNC (1 1))")  # §3.2.5: ENABLE QRESYNC first
    assert b"* ENABLED QRESYNC\r\n" in a.cmd("e1 ENABLE QRESYNC")
    reply = a.cmd("s1 SELECT INBOX")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", reply).group(1))
    known = int(re.search(rb"HIGHESTMODSEQ (\d+)", reply).group(1))  # QRESYNC implies CONDSTORE
    a.cmd("t1 STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    assert b"* VANISHED 2,4\r\n" in a.cmd("x1 EXPUNGE")  # §3.2.10.2: instead of EXPUNGE
    a.cmd("t2 STORE 1 +FLAGS (\\Answered)")
    reply = a.cmd("f1 UID FETCH 1:5 (FLAGS) (CHANGEDSINCE %d VANISHED)" % known)
    assert reply.index(b"* VANISHED (EARLIER) 2,4\r\n") < reply.index(b"FETCH (")  # VANISHED first
    assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered \\Recent\) MODSEQ \(\d+\)\)", reply)
    assert b"f2 BAD" in a.cmd("f2 FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")  # not UID FETCH
    assert b"f3 BAD" in a.cmd("f3 UID FETCH 1 (FLAGS) (VANISHED)")  # no CHANGEDSINCE
    a.cmd("u1 UNSELECT")
    # a client that saw the mailbox at `known` resynchronises in one SELECT (§3.2.5.1)
    reply = a.cmd("s2 SELECT INBOX (QRESYNC (%d %d 1:5))" % (validity, known))
    assert b"* VANISHED (EARLIER) 2,4\r\n" in reply
    assert re.search(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)", reply)
    assert b"* 2 FETCH" not in reply and b"s2 OK" in reply
    reply = a.cmd("s3 SELECT INBOX (QRESYNC (%d %d))" % (validity + 1, known))  # another UIDVALIDITY
    assert b"VANISHED" not in reply and b"s3 OK" in reply and reply.startswith(b"* OK [CLOSED]")
    b = Client(store)  # another session's expunge reaches a QRESYNC client as VANISHED too
    b.login()
    b.select()
    b.cmd("t3 STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd("x2 EXPUNGE")
    assert b"* VANISHED 1\r\n" in a.cmd("n1 NOOP")


def test_imapclient_qresync_fetch(tmp_path):
    imapclient = pytest.importorskip("imapclient")
    srv = RunningServer(tmp_path)
    try:
        for n in range(3):
            srv.store.deliver("bob", b"Subject: %d\r\n\r\nbody\r\n" % n)
        c = imapclient.IMAPClient("127.0.0.1", port=srv.port, ssl=False, timeout=10)
        c.login("bob", "bob")
        assert b"QRESYNC" in c.capabilities()
        assert c.enable("QRESYNC") == [b"QRESYNC"]
        highest = c.select_folder("INBOX")[b"HIGHESTMODSEQ"]
        other = imapclient.IMAPClient("127.0.0.1", port=srv.port, ssl=False, timeout=10)
        other.login("bob", "bob")
        other.select_folder("INBOX")
        other.delete_messages([2])
        other.expunge()
        other.add_flags([3], [b"\\Flagged"])
        other.logout()
        changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=["CHANGEDSINCE %d" % highest, "VANISHED"])
        assert list(changed) == [3] and b"\\Flagged" in changed[3][b"FLAGS"]
        # the UID FETCH's own VANISHED (EARLIER), then the news for the selected mailbox: two
        # responses, never combined (RFC 7162 §3.2.10)
        assert c._imap.untagged_responses.get("VANISHED") == [b"(EARLIER) 2", b"2"]
        c.logout()
    finally:
        srv.stop()
