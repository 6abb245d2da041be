"""SORT and THREAD (RFC 5256) and SEARCH RETURN / ESEARCH (RFC 4731): the base subject, the
sort order and tie-breaks, both threading algorithms, through the sans-I/O core and imaplib."""

from __future__ import annotations

import imaplib

import pytest

from mailtrace.protocols.imap.sort import base_subject
from test_imap_helpers import Client, make_store
from test_imap_server import RunningServer, ok


@pytest.mark.parametrize("subject, base, refwd", [
    ("a", "a", False),
    ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", True),
    ("Re: [FWD: c]", "c", True),
    ("[xyz]", "[xyz]", False),  # (4): a blob stays when nothing else is left
    (" ", "", False),
    ("Ad: Re: Ad: Re: Ad: x", "Ad: Re: Ad: Re: Ad: x", False),
    ("re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", True),
    ("Re:\tRe:  hello\r\n world", "hello world", True),
    ("b (a)", "b (a)", False),
])
def test_base_subject_rfc5256_section_2_1(subject, base, refwd):
    assert base_subject(subject) == (base, refwd)


def _mailbox(messages: list[bytes], dates: list[float] | None = None):
    store = make_store_dir()
    box = store.mailbox("alice")
    for i, msg in enumerate(messages):
        box.append(msg, internaldate=(dates[i] if dates else 1_200_000_000 + i))
    c = Client(store)
    c.login()
    c.select()
    return c


_tmp = []


def make_store_dir():
    import tempfile
    from pathlib import Path

    d = tempfile.TemporaryDirectory()
    _tmp.append(d)
    return make_store(Path(d.name))


def test_sort_by_each_key_with_reverse_and_ties():
    c = _mailbox([
        b"From: user2@domain2.org\r\nTo: b@x\r\nSubject: Re: beta\r\nDate: Fri, 22 Feb 2008 00:00:00 +0200\r\n\r\n1\r\n",
        b"From: user2@domain1.org\r\nTo: a@x\r\nSubject: alpha\r\nDate: Fri, 22 Feb 2008 02:00:00 +0200\r\n\r\n22\r\n",
        b"From: User1@domain1.org\r\nSubject: [list] beta\r\nDate: Thu, 21 Feb 2008 23:30:00 +0000\r\n\r\n333\r\n",
    ], dates=[100.0, 300.0, 200.0])
    assert b"* SORT 3 1 2\r\n" in c.cmd("a1 SORT (FROM) US-ASCII ALL")  # mailbox part only; ties by number
    assert b"* SORT 1 2 3\r\n" in c.cmd("a2 SORT (REVERSE FROM) UTF-8 ALL")  # REVERSE keeps ties in order
    assert b"* SORT 3 2 1\r\n" in c.cmd("a3 SORT (FROM REVERSE ARRIVAL) US-ASCII ALL")
    assert b"* SORT 1 3 2\r\n" in c.cmd("a4 SORT (ARRIVAL) US-ASCII ALL")
    assert b"* SORT 1 3 2\r\n" in c.cmd("a5 SORT (DATE) US-ASCII ALL")  # in UTC: 22:00, 23:30, 00:00
    assert b"* SORT 3 2 1\r\n" in c.cmd("a6 SORT (TO) US-ASCII ALL")  # no To: "" sorts first
    assert b"* SORT 2 1 3\r\n" in c.cmd("a7 SORT (SUBJECT) US-ASCII ALL")  # base subjects alpha, beta, beta
    assert b"* SORT 3 2 1\r\n" in c.cmd("a8 SORT (SIZE) US-ASCII ALL")  # 93, 95 and 97 octets
    assert b"* SORT 1 3\r\n" in c.cmd("a9 SORT (SUBJECT) US-ASCII SUBJECT beta")
    reply = c.cmd("b1 UID SORT (REVERSE SIZE) US-ASCII ALL")
    assert b"* SORT 1 2 3\r\n" in reply and b"b1 OK" in reply
    assert b"b2 NO [BADCHARSET" in c.cmd("b2 SORT (SIZE) KOI8-R ALL")
    assert b"b3 BAD" in c.cmd("b3 SORT (REVERSE) US-ASCII ALL")
    assert b"b4 BAD" in c.cmd("b4 SORT (COLOUR) US-ASCII ALL")


THREADED = [
    b"Message-ID: <a@b>\r\nSubject: plans\r\n\r\n1\r\n",
    b"Message-ID: <b@b>\r\nReferences: <a@b>\r\nSubject: Re: plans\r\n\r\n2\r\n",
    b"Message-ID: <c@b>\r\nIn-Reply-To: <a@b>\r\nSubject: Re: plans\r\n\r\n3\r\n",
    b"Message-ID: <d@b>\r\nReferences: <a@b> <b@b>\r\nSubject: Re: plans\r\n\r\n4\r\n",
    b"Message-ID: <e@b>\r\nSubject: other\r\n\r\n5\r\n",
    b"Message-ID: <f@b>\r\nReferences: <gone@b>\r\nSubject: Re: lost\r\n\r\n6\r\n",
    b"Message-ID: <g@b>\r\nReferences: <gone@b>\r\nSubject: Re: lost\r\n\r\n7\r\n",
    b"Message-ID: <h@b>\r\nSubject: Re: other\r\n\r\n8\r\n",
]


def test_thread_references():
    c = _mailbox(THREADED)
    reply = c.cmd("t1 THREAD REFERENCES US-ASCII ALL")
    # 2 and 3 answer 1, 4 answers 2; 6 and 7 share a missing parent (a dummy); 8 is a reply by
    # subject to 5 (step 5: a reply joins the original's children)
    assert b"* THREAD (1 (2 4)(3))(5 8)((6)(7))\r\n" in reply, reply
    reply = c.cmd("t2 UID THREAD REFERENCES UTF-8 NOT SUBJECT plans")
    assert b"* THREAD (5 8)((6)(7))\r\n" in reply
    assert b"* THREAD\r\n" in c.cmd("t3 THREAD REFERENCES US-ASCII SUBJECT nothing")
    assert b"t4 BAD" in c.cmd("t4 THREAD NOSUCH US-ASCII ALL")


def test_thread_references_survives_loops_and_duplicate_ids():
    c = _mailbox([
        b"Message-ID: <a@b>\r\nReferences: <b@b>\r\n\r\n1\r\n",
        b"Message-ID: <b@b>\r\nReferences: <a@b>\r\n\r\n2\r\n",
        b"Message-ID: <a@b>\r\n\r\n3\r\n",
        b"Message-ID: <\"x\"@b>\r\nReferences: <x@b>\r\n\r\n4\r\n",  # itself, once normalized
    ])
    reply = c.cmd("t1 THREAD REFERENCES US-ASCII ALL")
    assert b"t1 OK" in reply
    numbers = sorted(int(n) for n in reply.split(b"\r\n")[0].replace(b"(", b" ").replace(b")", b" ").split()[2:])
    assert numbers == [1, 2, 3, 4]  # every message once, no loop


def test_thread_orderedsubject():
    c = _mailbox([b"Subject: b\r\n\r\n1\r\n", b"Subject: a\r\n\r\n2\r\n", b"Subject: Re: a\r\n\r\n3\r\n",
                  b"Subject: re: b\r\n\r\n4\r\n", b"Subject: A\r\n\r\n5\r\n", b"Subject: c\r\n\r\n6\r\n"])
    assert b"* THREAD (1 4)(2 (3)(5))(6)\r\n" in c.cmd("t1 THREAD ORDEREDSUBJECT US-ASCII ALL")


def test_search_return_esearch():
    c = _mailbox([b"Subject: x\r\n\r\n1\r\n"] * 6)
    c.cmd("s0 STORE 2,4:5 +FLAGS (\\Seen)")
    assert b'* ESEARCH (TAG "s1") MIN 2 MAX 5 ALL 2,4:5 COUNT 3\r\n' in c.cmd(
        "s1 SEARCH RETURN (MIN MAX ALL COUNT) SEEN")
    assert b'* ESEARCH (TAG "s2") ALL 1,3,6\r\n' in c.cmd("s2 SEARCH RETURN () UNSEEN")
    assert b'* ESEARCH (TAG "s3") UID COUNT 0\r\n' in c.cmd("s3 UID SEARCH RETURN (MIN COUNT) 1000")
    assert b'* ESEARCH (TAG "s4") MIN 1\r\n' in c.cmd("s4 SEARCH RETURN (MIN) CHARSET UTF-8 ALL")
    assert b"s5 BAD" in c.cmd("s5 SEARCH RETURN (SAVE) ALL")
    assert b"* SEARCH 2 4 5\r\n" in c.cmd("s6 SEARCH SEEN")  # without RETURN: the old response


def test_imaplib_sort_and_thread_on_the_server(tmp_path):
    srv = RunningServer(tmp_path)
    try:
        for msg in THREADED:
            srv.store.deliver("bob", msg)
        m = imaplib.IMAP4("127.0.0.1", srv.port, timeout=10)
        m.login("bob", "bob")
        assert {"SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "ESEARCH"} <= set(m.capabilities)
        ok(m.select("INBOX"))
        assert ok(m.sort("(REVERSE ARRIVAL)", "UTF-8", "ALL")) == [b"8 7 6 5 4 3 2 1"]
        assert ok(m.thread("REFERENCES", "UTF-8", "ALL")) == [b"(1 (2 4)(3))(5 8)((6)(7))"]
        m.logout()
    finally:
        srv.stop()
