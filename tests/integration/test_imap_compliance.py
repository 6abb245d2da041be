"""What Dovecot's imaptest found (issue 16), one test each, on a real server driven by imaplib
and raw sockets: concurrent flag updates, \\Recent on copies, CREATE with a trailing
separator, "[" in atoms, folded Content-Type, source routes, address comments, ID, untagged
FLAGS for new keywords, no mailbox news after LOGOUT."""

from __future__ import annotations

import imaplib
import threading

import pytest

from mailtrace.protocols.imap import bodystructure
from test_imap_server import RunningServer, _raw, _until, ok

FOLDED = (b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n\r\n"
          b"Root MIME prologue\r\n\r\n--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\n\r\nhello\r\n\r\n"
          b"--foo bar\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--foo bar--\r\n")
ROUTED = b"From: <@route:user@domain>\r\nSubject: r\r\n\r\nbody\r\n"
COMMENTED = b"From: <user-from (comment)@ (comment) domain.org>\r\nSubject: c\r\n\r\nbody\r\n"
PLAIN = b"From: someone@else.org\r\nSubject: p\r\n\r\nbody\r\n"


@pytest.fixture
def server(tmp_path):
    srv = RunningServer(tmp_path)
    for msg in (FOLDED, ROUTED, COMMENTED, PLAIN):
        srv.store.deliver("bob", msg)
    yield srv
    srv.stop()


def _bob(server) -> imaplib.IMAP4:
    return server.client("bob")


def test_two_sessions_changing_different_flags_both_keep_their_change(server):
    a, b = _bob(server), _bob(server)
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    ok(a.store("1", "FLAGS", "(\\Seen)"))
    ok(b.noop())  # b's cached flags: (\Seen)
    ok(a.store("1", "+FLAGS", "(\\Answered)"))
    ok(b.store("1", "-FLAGS", "(\\Seen)"))  # from b's stale copy this would drop \Answered
    for m in (a, b):
        data = ok(m.fetch("1", "FLAGS"))
        assert b"\\Answered" in data[-1] and b"\\Seen" not in data[-1], data
    a.logout()
    b.logout()


def test_flag_changes_from_many_threads_are_never_lost(server):
    keywords = [f"kw{i}" for i in range(8)]
    clients = [_bob(server) for _ in keywords]
    for m in clients:
        ok(m.select("INBOX"))

    def add(m, kw):
        ok(m.store("4", "+FLAGS", f"({kw})"))

    threads = [threading.Thread(target=add, args=(m, kw)) for m, kw in zip(clients, keywords)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(kw in server.store.mailbox("bob").get(4).flags for kw in keywords)
    for m in clients:
        m.logout()


def test_copies_are_recent_in_a_mailbox_another_session_has_selected(server):
    a, b = _bob(server), _bob(server)
    ok(a.create("Other"))
    ok(b.select("Other"))
    ok(a.select("INBOX"))
    ok(a.store("1", "FLAGS", "(\\Seen)"))
    ok(a.store("2", "FLAGS", "(\\Flagged)"))
    ok(a.copy("1:3", "Other"))  # two with flags (cur/), one without (new/)
    ok(b.noop())
    assert b.untagged_responses["EXISTS"][-1] == b"3" and b.untagged_responses["RECENT"][-1] == b"3"
    flags = ok(b.fetch("1:3", "FLAGS"))
    assert all(b"\\Recent" in line for line in flags), flags
    assert b"\\Seen" in flags[0] and b"\\Flagged" in flags[1]
    c = _bob(server)  # \Recent went to b alone (RFC 3501 §2.3.2)
    ok(c.select("Other"))
    assert c.untagged_responses["RECENT"][-1] == b"0"
    for m in (a, b, c):
        m.logout()


def test_create_with_a_trailing_separator_creates_the_mailbox(server):
    m = _bob(server)
    ok(m.create("Projects."))
    ok(m.create("Projects.2024."))
    names = [line.rsplit(b" ", 1)[-1] for line in ok(m.list('""', "Projects*"))]
    assert names == [b"Projects", b"Projects.2024"]
    ok(m.subscribe("Projects"))
    m.logout()


def test_a_bracket_in_an_atom_is_a_plain_character(server):
    sock, f = _raw(server.port)
    sock.sendall(b"a1 LOGIN bob bob\r\na2 CREATE a[b\r\na3 SELECT a[b\r\na4 LIST \"\" a[*\r\n")
    reply = _until(f, b"a4")
    assert b"a2 OK" in reply and b"a3 OK" in reply
    assert b'* LIST (\\HasNoChildren) "." "a[b"\r\n' in reply or b'* LIST (\\HasNoChildren) "." a[b\r\n' in reply
    sock.sendall(b"a5 SELECT INBOX\r\na6 FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n")  # sections still work
    assert b"a6 OK" in _until(f, b"a6")
    sock.close()


def test_a_folded_content_type_is_unfolded(server):
    m = _bob(server)
    ok(m.select("INBOX"))
    body = ok(m.fetch("1", "BODY"))[0]
    assert body.startswith(b'1 (BODY (("TEXT" "X-MYOWN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1)'), body
    assert body.endswith(b'"MIXED"))')
    part = ok(m.fetch("1", "(BODY.PEEK[1] BODY.PEEK[2.MIME])"))
    assert part[0][1] == b"hello\r\n" and part[1][1] == b"Content-Type: text/plain\r\n\r\n"
    bs = ok(m.fetch("1", "BODYSTRUCTURE"))[0]
    assert b'("BOUNDARY" "foo bar")' in bs
    m.logout()


def test_a_source_route_is_kept_in_envelope():
    part = bodystructure.parse(ROUTED)
    assert b'((NIL "@route" "user" "domain"))' in bodystructure.envelope(part)
    two = bodystructure.parse(b"To: Jo <@a.example,@b.example:jo@c.example>\r\n\r\n")
    assert bodystructure.address_list(two, "to") == [("Jo", "@a.example,@b.example", "jo", "c.example")]


def test_search_from_finds_an_address_written_with_comments(server):
    m = _bob(server)
    ok(m.select("INBOX"))
    assert ok(m.search(None, "FROM", "user-from@domain.org")) == [b"3"]
    assert ok(m.search(None, "FROM", "user@domain")) == [b"1 2"]  # a substring (RFC 3501 §6.4.4)
    assert ok(m.search(None, "FROM", "someone")) == [b"4"]
    m.logout()


def test_id_before_and_after_login(server):
    sock, f = _raw(server.port)
    fields = b" ".join(b'"f%02d" "%s"' % (i, b"v" * 1024) for i in range(30))
    sock.sendall(b"a1 ID (" + fields + b")\r\n")
    reply = _until(f, b"a1")
    assert reply.startswith(b'* ID ("name" "mailtrace"') and reply.endswith(b"a1 OK ID completed\r\n")
    sock.sendall(b"a2 ID NIL\r\na3 ID (\"odd\")\r\na4 ID (\"" + b"x" * 31 + b"\" NIL)\r\n")
    reply = _until(f, b"a4")
    assert b"a2 OK" in reply and b"a3 BAD" in reply and b"a4 BAD" in reply
    sock.sendall(b"a5 LOGIN bob bob\r\na6 ID NIL\r\n")
    assert b"a6 OK" in _until(f, b"a6")
    sock.close()
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    assert "ID" in m.capabilities
    m.logout()


def test_untagged_flags_comes_before_a_new_keyword_is_used(server):
    a, b = _bob(server), _bob(server)
    ok(a.select("INBOX"))
    ok(b.select("INBOX"))
    sock, f = _raw(server.port)
    sock.sendall(b"a1 LOGIN bob bob\r\na2 SELECT INBOX\r\n")
    assert b"$hello" not in _until(f, b"a2")
    sock.sendall(b"a3 STORE 2 +FLAGS ($hello)\r\n")
    reply = _until(f, b"a3").splitlines()
    flags_at = next(i for i, line in enumerate(reply) if line.startswith(b"* FLAGS (") and b"$hello" in line)
    fetch_at = next(i for i, line in enumerate(reply) if line.startswith(b"* 2 FETCH") and b"$hello" in line)
    assert flags_at < fetch_at
    assert any(line.startswith(b"* OK [PERMANENTFLAGS (") and b"$hello" in line for line in reply)
    sock.close()
    typ, _ = b.noop()  # the other session hears of the keyword the same way
    assert typ == "OK" and any(b"$hello" in x for x in b.untagged_responses.get("FLAGS", []))
    a.logout()
    b.logout()


def test_no_untagged_fetch_after_logout(server):
    a = _bob(server)
    ok(a.select("INBOX"))
    sock, f = _raw(server.port)
    sock.sendall(b"a1 LOGIN bob bob\r\na2 SELECT INBOX\r\n")
    _until(f, b"a2")
    ok(a.store("1", "+FLAGS", "(\\Flagged)"))
    sock.sendall(b"a3 LOGOUT\r\n")
    reply = _until(f, b"a3")
    assert b"FETCH" not in reply and reply.startswith(b"* BYE")
    sock.close()
    a.logout()
