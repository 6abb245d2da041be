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
