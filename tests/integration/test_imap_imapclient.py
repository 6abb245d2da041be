"""imapclient (a widely used Python IMAP library, not written here) against our IMAP server, and
the same session against Dovecot where it runs (issue 20): subscriptions and LSUB with * and
%, select, append, search, fetch, store, copy, move, expunge, idle, unselect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

imapclient = pytest.importorskip("imapclient")

from test_imap_server import RunningServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

MSG = b"From: a@lab.test\r\nTo: bob@lab.test\r\nSubject: %s\r\n\r\nbody %s\r\n"


def _client(port: int):
    c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    c.login("bob", "bob")
    return c


def _names(listing) -> list[tuple[tuple, str]]:
    return sorted((tuple(sorted(f.decode() for f in flags)), name) for flags, _, name in listing)


def session(port: int) -> dict:
    """One client's session; what it saw, in a form two servers can be compared on."""
    seen: dict = {}
    c = _client(port)
    for name in ("__t.a", "__t.b"):
        c.create_folder(name)
        c.subscribe_folder(name)
    seen["lsub *"] = _names(c.list_sub_folders("", "__t*"))
    seen["lsub %"] = _names(c.list_sub_folders("", "__t%"))
    seen["lsub %.%"] = _names(c.list_sub_folders("", "__t.%"))
    # the clean-up of a client that believes LSUB: every name it listed, then the rest
    for _, name in seen["lsub *"] + seen["lsub %"]:
        c.unsubscribe_folder(name)
    c.unsubscribe_folder("__t")  # never subscribed: OK all the same
    seen["lsub after"] = _names(c.list_sub_folders("", "__t*"))
    c.subscribe_folder("__t.b")
    c.delete_folder("__t.b")  # RFC 3501 §6.3.9: a subscription outlives its mailbox
    seen["lsub deleted"] = [name for _, name in _names(c.list_sub_folders("", "__t*"))]
    c.unsubscribe_folder("__t.b")

    c.select_folder("INBOX")
    for word in (b"alpha", b"beta", b"gamma"):
        c.append("INBOX", MSG % (word, word), flags=[b"$Draftish"] if word == b"beta" else [])
    c.noop()
    uids = c.search(["ALL"])
    seen["search all"] = len(uids)
    seen["search subject"] = len(c.search(["SUBJECT", "beta"]))
    data = c.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "RFC822.SIZE"])
    seen["fetch"] = [(sorted(f.decode() for f in data[u][b"FLAGS"] if f != b"\\Recent"),
                      data[u][b"BODY[HEADER.FIELDS (SUBJECT)]"], data[u][b"RFC822.SIZE"]) for u in uids]
    c.add_flags(uids[0], [b"\\Flagged"])
    c.remove_flags(uids[1], [b"$Draftish"])
    c.set_flags(uids[2], [b"\\Seen", b"$Done"])
    flags = c.get_flags(uids)
    seen["flags"] = [sorted(f.decode() for f in flags[u] if f != b"\\Recent") for u in uids]
    c.copy(uids[0], "__t.a")
    c.move(uids[1], "__t.a")
    seen["after move"] = len(c.search(["ALL"]))
    c.delete_messages(uids[2])
    seen["expunged"] = c.expunge()[1]

    other = _client(port)
    other.select_folder("INBOX")
    other.idle()
    c.append("INBOX", MSG % (b"pushed", b"pushed"))
    responses = []
    for _ in range(20):  # bounded: each idle_check returns as soon as anything arrives
        responses += other.idle_check(timeout=5)
        if any(r[1:2] == (b"EXISTS",) for r in responses):
            break
    other.idle_done()
    seen["idle exists"] = any(r[1:2] == (b"EXISTS",) for r in responses)
    other.logout()

    seen["unselect"] = c.unselect_folder()
    c.select_folder("__t.a")
    seen["__t.a"] = len(c.search(["ALL"]))
    c.close_folder()
    c.delete_folder("__t.a")
    seen["lsub end"] = _names(c.list_sub_folders("", "*"))
    c.logout()
    return seen


def test_imapclient_session_on_mailtrace(tmp_path):
    srv = RunningServer(tmp_path)
    try:
        seen = session(srv.port)
    finally:
        srv.stop()
    assert seen["lsub *"] == [((), "__t.a"), ((), "__t.b")]  # no unsubscribed parent with *
    assert seen["lsub %"] == [(("\\Noselect",), "__t")]  # only with % (RFC 3501 §6.3.9)
    assert seen["lsub %.%"] == [((), "__t.a"), ((), "__t.b")]
    assert seen["lsub after"] == [] and seen["lsub deleted"] == ["__t.b"] and seen["lsub end"] == []
    assert seen["search all"] == 3 and seen["search subject"] == 1
    assert [f for f, _, _ in seen["fetch"]] == [[], ["$Draftish"], []]
    assert seen["fetch"][1][1] == b"Subject: beta\r\n\r\n"
    assert seen["flags"] == [["\\Flagged"], [], ["$Done", "\\Seen"]]
    assert seen["after move"] == 2 and seen["expunged"] == [(2, b"EXPUNGE"), (1, b"RECENT")]
    assert seen["idle exists"] and seen["unselect"] == b"UNSELECT completed, now in the authenticated state"
    assert seen["__t.a"] == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dovecot") is None or os.geteuid() != 0,
                    reason="needs Dovecot (Debian: dovecot-imapd) and root to start it")
def test_imapclient_sees_what_it_sees_on_dovecot():
    from bench_pop3 import Dovecot, mail_owner

    shared = Path(tempfile.mkdtemp(prefix="imapclient-dovecot-"))
    shared.chmod(0o755)  # Dovecot's auth process reads its passwd file there
    try:
        srv = RunningServer(shared / "lab")
        try:
            ours = session(srv.port)
        finally:
            srv.stop()
        (shared / "dc-mail" / "bob").mkdir(parents=True)
        uid, gid = mail_owner()
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(shared / "dc-mail")], check=True)
        dovecot = Dovecot(shared / "dovecot", shared / "dc-mail", {"bob": "bob"}, protocols=("imap",)).start()
        try:
            theirs = session(dovecot.ports["imap"])
        finally:
            dovecot.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    ours.pop("unselect"), theirs.pop("unselect")  # the completion texts differ
    assert ours == theirs, (ours, theirs)
