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
