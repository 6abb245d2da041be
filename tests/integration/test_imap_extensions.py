"""Extensions of issue 16 beyond SORT/THREAD/BINARY: MULTIAPPEND (RFC 4466 §2.7), through the
sans-I/O core and imaplib."""

from __future__ import annotations

import pytest

from mailtrace.store.model import MailboxNotFound
from test_imap_helpers import Client, make_store


@pytest.fixture
def client(tmp_path):
    store = make_store(tmp_path)
    c = Client(store)
    c.login()
    c.store = store
    return c


def test_multiappend_stores_all_with_one_uid_set(client):
    one, two = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"
    reply = client.send(b"a1 APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged) \"01-Jan-2020 10:00:00 +0000\" {%d+}\r\n%s\r\n"
                        % (len(one), one, len(two), two))
    assert b"a1 OK [APPENDUID " in reply and reply.rstrip().split(b"]")[0].endswith(b" 1:2")
    msgs = client.store.mailbox("alice").messages()
    assert [m.flags for m in msgs] == [{"\\Seen"}, {"\\Flagged"}]
    assert msgs[1].internaldate == 1577872800


def test_multiappend_is_all_or_nothing(client):
    one = b"Subject: one\r\n\r\n1\r\n"
    reply = client.send(b"a1 APPEND INBOX {%d+}\r\n%s {0+}\r\n\r\n" % (len(one), one))
    assert b"a1 NO" in reply
    assert client.store.mailbox("alice").messages() == []


def test_folder_write_messages_leaves_nothing_on_failure(tmp_path):
    store = make_store(tmp_path)
    box = store.mailbox("alice")
    folder = box._folder
    folder.path.joinpath("tmp").rename(folder.path / "tmp-gone")  # no tmp/: the delivery fails
    with pytest.raises(MailboxNotFound):
        box.append_many([(b"Subject: a\r\n\r\na\r\n", (), None), (b"Subject: b\r\n\r\nb\r\n", (), None)])
    folder.path.joinpath("tmp-gone").rename(folder.path / "tmp")
    box.refresh()
    assert box.messages() == [] and not list(folder.path.joinpath("tmp").iterdir())


def test_enable_utf8_accept_mailbox_names_both_ways(client):
    assert b"a1 OK" in client.cmd('a1 CREATE "Entw&APw-rfe"')  # modified UTF-7, before ENABLE
    reply = client.cmd("e1 ENABLE UTF8=ACCEPT X-UNKNOWN")
    assert b"* ENABLED UTF8=ACCEPT\r\ne1 OK" in reply  # unknown names ignored (RFC 5161 §3.1)
    assert b"* ENABLED\r\n" in client.cmd("e2 ENABLE UTF8=ACCEPT")  # already on: nothing newly enabled
    assert b"a2 OK" in client.cmd('a2 CREATE "Ñu & co"'.encode())
    listing = client.cmd('a3 LIST "" *')
    assert '* LIST (\\HasNoChildren) "." "Entwürfe"'.encode() in listing
    assert '"Ñu & co"'.encode() in listing
    assert "Ñu & co" not in client.store.list_mailboxes("alice")
    assert "&ANE-u &- co" in client.store.list_mailboxes("alice")  # stored as Dovecot does
    assert 'STATUS "Entwürfe" (MESSAGES 0)'.encode() in client.cmd('a4 STATUS "Entwürfe" (MESSAGES)'.encode())
    assert b"a5 BAD" in client.cmd(b'a5 SELECT "\xff\xfe"')  # not UTF-8 (RFC 6855 §3)
    client.cmd("s1 SELECT INBOX")
    assert b"s2 BAD" in client.cmd("s2 SEARCH CHARSET UTF-8 ALL")
    assert b"* SEARCH\r\n" in client.cmd("s3 SEARCH ALL")


def test_enable_only_in_the_authenticated_state(tmp_path):
    c = Client(make_store(tmp_path))
    assert b"e1 BAD" in c.cmd("e1 ENABLE UTF8=ACCEPT")  # not authenticated
    c.login()
    c.select()
    assert b"e2 BAD" in c.cmd("e2 ENABLE UTF8=ACCEPT")  # selected (RFC 6855 §3, RFC 5161 §3.1)
    assert b"e3 BAD" in c.cmd("e3 ENABLE")


def test_append_with_utf8_headers_needs_enable(client):
    msg = "Subject: ¡Olé!\r\nFrom: José <jose@lab.test>\r\n\r\nhola\r\n".encode()
    assert b"a1 NO" in client.send(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
    client.cmd("e1 ENABLE UTF8=ACCEPT")
    assert b"a2 OK [APPENDUID" in client.send(b"a2 APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(msg), msg))
    assert b"a3 OK [APPENDUID" in client.send(b"a3 APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg))
    assert len(client.store.mailbox("alice").messages()) == 2


def _listing(reply: bytes) -> list[bytes]:
    return [line for line in reply.split(b"\r\n") if line.startswith((b"* LIST", b"* STATUS"))]


def test_list_extended_selection_and_return_options(client):
    for name in ("Work.a", "Work.b.c", "Sent", "Trash", "Old"):
        client.cmd(f"c CREATE {name}")
    for name in ("Work.b.c", "Gone", "Sent"):
        client.cmd(f"s SUBSCRIBE {name}")
    client.cmd("d DELETE Old")
    assert _listing(client.cmd('l1 LIST "" (Work.a Sent)')) == [b'* LIST () "." Sent', b'* LIST () "." Work.a']
    assert _listing(client.cmd('l2 LIST (SUBSCRIBED) "" *')) == [
        b'* LIST (\\NonExistent \\Subscribed) "." Gone', b'* LIST (\\Subscribed) "." Sent',
        b'* LIST (\\Subscribed) "." Work.b.c']
    # RFC 5258 §3.5: Work.b is not subscribed but holds a subscribed name the pattern misses
    assert _listing(client.cmd('l3 LIST (SUBSCRIBED RECURSIVEMATCH) "" Work.% RETURN (CHILDREN)')) == [
        b'* LIST (\\Noselect \\HasChildren) "." Work.b (CHILDINFO ("SUBSCRIBED"))']
    assert _listing(client.cmd('l4 LIST "" % RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)')) == [
        b'* LIST (\\HasNoChildren) "." INBOX', b'* LIST (\\HasNoChildren \\Subscribed \\Sent) "." Sent',
        b'* LIST (\\HasNoChildren \\Trash) "." Trash', b'* LIST (\\Noselect \\HasChildren) "." Work']
    assert _listing(client.cmd('l5 LIST (SPECIAL-USE) "" *')) == [
        b'* LIST (\\Sent) "." Sent', b'* LIST (\\Trash) "." Trash']
    client.send(b"a1 APPEND Trash {19+}\r\nSubject: x\r\n\r\nbody\r\n")
    assert _listing(client.cmd('l6 LIST "" T* RETURN (STATUS (MESSAGES UNSEEN))')) == [
        b'* LIST () "." Trash', b'* STATUS Trash (MESSAGES 1 UNSEEN 1)']
    assert b"* LIST (\\HasNoChildren \\Trash)" in client.cmd('l7 LIST "" Trash')  # plain LIST too
    for bad in ("(RECURSIVEMATCH)", "(REMOTE RECURSIVEMATCH)", "(NOSUCH)"):
        assert b"b BAD" in client.cmd(f'b LIST {bad} "" *')
    assert b"b2 BAD" in client.cmd('b2 LIST "" * RETURN (NOSUCH)')
    assert b"l8 OK" in client.cmd('l8 LIST (REMOTE) "" %')
