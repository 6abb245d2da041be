"""The sans-I/O IMAP core, fed bytes directly (whole, and in small chunks), on a real Maildir store."""

from __future__ import annotations

import base64
import re

import pytest

from mailtrace.protocols.base import Close, Send, send_all, settle
from mailtrace.protocols.imap import State
from mailtrace.transcript.event import Kind, Side
from test_imap_helpers import MULTI, PASSWORD, SIMPLE, Client, make_core, make_store, tagged

CHUNKS = [1, 7, 10_000]


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path / "mail")
    s.deliver("alice", SIMPLE)
    s.deliver("alice", MULTI)
    yield s
    s.close()


@pytest.mark.parametrize("chunk", CHUNKS)
def test_login_with_a_synchronizing_literal_password(store, chunk):
    c = Client(store, chunk)
    assert [o for o in c.outputs if isinstance(o, Send)][0].data.startswith(b"* OK [CAPABILITY IMAP4rev1")
    out = c.send(b"a1 LOGIN alice {%d}\r\n" % len(PASSWORD))
    assert out == b"+ Ready for literal data\r\n"
    out = c.send(PASSWORD.encode() + b"\r\n")
    assert tagged(out, "a1") == b"OK"
    assert c.core.state is State.AUTHENTICATED
    literal = [e for e in c.events if e.kind is Kind.LITERAL]
    assert len(literal) == 1 and literal[0].raw == PASSWORD.encode() and literal[0].shown() == b"***"
    assert all(PASSWORD.encode() not in e.shown() for e in c.events)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_login_with_a_quoted_password_is_redacted(store, chunk):
    c = Client(store, chunk)
    out = c.cmd(b'a1 LOGIN "alice" "pa ss\\"w\\\\rd"')
    assert tagged(out, "a1") == b"OK"
    cmd = [e for e in c.events if e.kind is Kind.COMMAND][0]
    assert cmd.verb == "LOGIN" and cmd.tag == "a1" and cmd.shown() == b'a1 LOGIN "alice" ***\r\n'
    assert b"pa ss" in cmd.raw


def test_wrong_password_and_unknown_user_get_the_same_no(store):
    c = Client(store)
    a = c.cmd("a1 LOGIN alice wrong")
    b = c.cmd("a2 LOGIN mallory wrong")
    assert b"a1 NO [AUTHENTICATIONFAILED]" in a and b"a2 NO [AUTHENTICATIONFAILED]" in b
    assert c.core.state is State.NOT_AUTHENTICATED


@pytest.mark.parametrize("chunk", CHUNKS)
def test_authenticate_plain_with_continuation(store, chunk):
    c = Client(store, chunk)
    token = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    assert c.cmd("a1 AUTHENTICATE PLAIN") == b"+ \r\n"
    assert tagged(c.send(token + b"\r\n"), "a1") == b"OK"
    data = [e for e in c.events if e.kind is Kind.DATA]
    assert data[0].verb == "AUTHENTICATE" and data[0].shown() == b"***\r\n"


def test_authenticate_plain_initial_response_cancel_and_garbage(store):
    c = Client(store)
    token = base64.b64encode(b"\0alice\0wrong").decode()
    assert b"a1 NO" in c.cmd(f"a1 AUTHENTICATE PLAIN {token}")
    c.cmd("a2 AUTHENTICATE PLAIN")
    assert b"a2 BAD" in c.cmd("*")
    c.cmd("a3 AUTHENTICATE PLAIN")
    assert b"a3 BAD" in c.cmd("!!!not base64")
    assert b"a4 NO" in c.cmd("a4 AUTHENTICATE CRAM-MD5")
    assert token.encode() not in b"".join(e.shown() for e in c.events)


def test_select_reports_what_rfc3501_requires(store):
    c = Client(store)
    c.login()
    out = c.select("inbox")
    for piece in (rb"\* FLAGS \(", rb"\* 2 EXISTS", rb"\* 2 RECENT", rb"\* OK \[UIDVALIDITY \d+\]", rb"\* OK \[UIDNEXT 3\]",
                  rb"\* OK \[PERMANENTFLAGS \(.*\\\*\)\]", rb"\* OK \[UNSEEN 1\]", rb"S1 OK \[READ-WRITE\]"):
        assert re.search(piece, out), piece
    assert c.core.state is State.SELECTED
    c2 = Client(store)
    c2.login()
    out = c2.cmd("e1 EXAMINE INBOX")
    assert b"* 0 RECENT" in out and b"e1 OK [READ-ONLY]" in out  # \Recent went to the first session


def test_fetch_items_and_seen(store):
    c = Client(store)
    c.login()
    c.select()
    out = c.cmd("f1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] FLAGS)")
    assert b"BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: hello there\r\n\r\n" in out
    assert b"\\Seen" not in out
    out = c.cmd("f2 FETCH 1 BODY[]")
    assert b"BODY[] {%d}\r\n" % len(SIMPLE) + SIMPLE in out and b"FLAGS (\\Seen \\Recent)" in out
    out = c.cmd("f3 UID FETCH 1 (RFC822.SIZE INTERNALDATE ENVELOPE)")
    assert b"UID 1" in out and b"RFC822.SIZE %d" % len(SIMPLE) in out
    assert (b'ENVELOPE ("Mon, 02 Jan 2023 10:00:00 +0000" "hello there" (("Bob Example" NIL "bob" "lab.test"))'
            in out)
    assert b'((NIL NIL "carol" "lab.test")) NIL NIL "<1@lab.test>")' in out
    out = c.cmd("f4 FETCH 1 BODY[TEXT]<6.7>")
    assert b"BODY[TEXT]<6> {7}\r\nmessage" in out


def test_a_fetch_that_reads_bodies_names_the_messages_it_read_on_its_tagged_reply(store):
    c = Client(store)
    c.login()
    c.select()
    c.cmd("f1 FETCH 1:2 BODY.PEEK[]")
    c.cmd("f2 FETCH 1:2 FLAGS")
    done = {e.tag: e for e in c.events if e.kind is Kind.REPLY and e.tag in ("f1", "f2")}
    assert [(m.action, m.user, m.mailbox, m.uid) for m in done["f1"].messages] == [
        ("read", "alice", "INBOX", 1), ("read", "alice", "INBOX", 2)]
    assert done["f2"].messages == ()


def test_bodystructure_and_sections(store):
    c = Client(store)
    c.login()
    c.select()
    out = c.cmd("f1 FETCH 2 BODYSTRUCTURE")
    assert b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 22 0' in out
    assert b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 49 (NIL "inner" ((NIL NIL "dave" "lab.test"))' in out
    assert b'"MIXED" ("BOUNDARY" "XYZ") NIL NIL NIL)' in out
    out = c.cmd("f2 FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY)")
    assert b"BODY[1] {22}\r\nThe caf=C3=A9 numbers. BODY[1.MIME]" in out
    assert b"BODY[1.MIME] {88}\r\nContent-Type: text/plain; charset=utf-8\r\n" in out
    assert b"BODY[2.HEADER] {39}\r\nSubject: inner\r\nFrom: dave@lab.test\r\n\r\n" in out
    assert b"BODY[2.TEXT] {10}\r\ninner body" in out
    assert b"BODY[2.1] {10}\r\ninner body" in out
    assert b'BODY (("TEXT" "PLAIN"' in out
    out = c.cmd("f3 FETCH 2 BODY.PEEK[HEADER.FIELDS.NOT (FROM TO DATE MIME-VERSION CONTENT-TYPE)]")
    assert b"{41}\r\nSubject: =?utf-8?q?caf=C3=A9?= report\r\n\r\n" in out
    assert b"f4 OK" in c.cmd("f4 FETCH 2 BODY.PEEK[9]")  # no such part: an empty string


@pytest.mark.parametrize("query,expected", [
    ("ALL", [1, 2]), ("FROM bob", [1]), ('SUBJECT "café"', [2]), ("CHARSET UTF-8 SUBJECT café", [2]),
    ("TO alice CC carol", [1]), ("BODY numbers", [2]), ("TEXT dave", [2]), ("TEXT inner", [2]),
    ('HEADER Message-ID "<1@lab.test>"', [1]), ("NOT FROM bob", [2]), ("OR FROM bob FROM carol", [1, 2]),
    ("(FROM bob) (TO alice)", [1]), ("SENTSINCE 3-Jan-2023", [2]), ("SENTBEFORE 3-Jan-2023", [1]),
    ("SENTON 2-Jan-2023", [1]), ("SINCE 1-Jan-2020", [1, 2]), ("BEFORE 1-Jan-2020", []), ("LARGER 300", [2]),
    ("SMALLER 300", [1]), ("UNSEEN", [1, 2]), ("SEEN", []), ("RECENT NEW", [1, 2]), ("OLD", []), ("2", [2]),
    ("1:*", [1, 2]), ("UID 2", [2]), ("UNDELETED UNFLAGGED UNANSWERED UNDRAFT", [1, 2]),
    ("KEYWORD $Junk", []), ("UNKEYWORD $Junk", [1, 2]),
])
def test_search_keys(store, query, expected):
    c = Client(store)
    c.login()
    c.select()
    out = c.cmd(f"s1 SEARCH {query}".encode())
    assert tagged(out, "s1") == b"OK", out
    found = [int(x) for x in re.search(rb"\* SEARCH([ 0-9]*)\r\n", out).group(1).split()]
    assert found == expected


def test_search_errors(store):
    c = Client(store)
    c.login()
    c.select()
    assert b"s1 NO [BADCHARSET (UTF-8 US-ASCII)]" in c.cmd("s1 SEARCH CHARSET KOI8-R ALL")
    for bad in ("s2 SEARCH", "s3 SEARCH FOO", "s4 SEARCH SINCE yesterday", "s5 SEARCH (ALL", "s6 SEARCH OR ALL",
                "s7 SEARCH LARGER x", "s8 SEARCH " + "NOT " * 200 + "ALL"):
        assert tagged(c.cmd(bad), bad.split()[0]) == b"BAD"


def test_store_flags(store):
    c = Client(store)
    c.login()
    c.select()
    assert b"* 1 FETCH (FLAGS (\\Flagged \\Recent))" in c.cmd("t1 STORE 1 +FLAGS (\\Flagged)")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen $Work \\Recent))" in c.cmd(
        "t2 UID STORE 1 +FLAGS (\\Seen $Work)")
    out = c.cmd("t3 STORE 1 -FLAGS.SILENT (\\Flagged)")
    assert b"FETCH" not in out and b"t3 OK" in out
    assert b"* 1 FETCH (FLAGS (\\Answered \\Recent))" in c.cmd("t4 STORE 1 FLAGS \\Answered")
    assert store.mailbox("alice").get(1).flags == frozenset({"\\Answered"})
    assert b"t5 BAD" in c.cmd("t5 STORE 1 FLAGS (\\Bogus)")
    assert b"t6 BAD" in c.cmd("t6 STORE 1 XFLAGS (\\Seen)")


def test_expunge_is_reported_to_another_session_but_not_during_fetch(store):
    a, b = Client(store), Client(store)
    for c in (a, b):
        c.login()
        c.select()
    a.cmd("x1 STORE 1 +FLAGS.SILENT (\\Deleted)")
    out = a.cmd("x2 EXPUNGE")
    assert b"* 1 EXPUNGE\r\n* 1 RECENT\r\nx2 OK" in out  # the recent count fell (as Dovecot says)
    out = b.cmd("y1 FETCH 1:* FLAGS")  # §7.4.1: no EXPUNGE during FETCH
    assert b"EXPUNGE" not in out and b"y1 OK" in out
    assert b"* 1 EXPUNGE" in b.cmd("y2 NOOP")
    assert b"* 1 FETCH" in b.cmd("y3 FETCH 1 UID") and b"UID 2" in b.cmd("y4 FETCH 1 UID")


def test_new_mail_and_flag_changes_reach_other_sessions(store):
    a, b = Client(store), Client(store)
    for c in (a, b):
        c.login()
        c.select()
    store.deliver("alice", b"Subject: third\r\n\r\nbody\r\n")
    a.cmd("x1 STORE 2 +FLAGS.SILENT (\\Flagged)")
    out = b.cmd("y1 NOOP")
    assert b"* 3 EXISTS" in out and b"* 0 RECENT" in out  # session a saw it first: \Recent is a's
    assert re.search(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged", out)


def test_idle_is_woken_by_notify(store):
    c = Client(store)
    c.login()
    c.select()
    assert c.cmd("i1 IDLE") == b"+ idling\r\n"
    assert c.core.notify() == []  # nothing changed
    store.deliver("alice", b"Subject: new\r\n\r\nbody\r\n")
    # (looking at the mailbox is a store job: settle() runs it as the shell's worker thread would)
    out = send_all(settle(c.core.notify()))
    assert out == b"* 3 EXISTS\r\n* 3 RECENT\r\n"
    assert c.cmd("DONE") == b"i1 OK IDLE terminated\r\n"
    assert b"i2 BAD" in (c.cmd("i2 IDLE") + c.cmd("NOTDONE"))


def test_copy_move_and_uid_expunge(store):
    c = Client(store)
    c.login()
    assert b"c1 OK" in c.cmd("c1 CREATE Archive")
    c.select()
    out = c.cmd("c2 COPY 1:2 Archive")
    assert re.search(rb"c2 OK \[COPYUID \d+ 1:2 1:2\]", out)
    assert b"c3 NO [TRYCREATE]" in c.cmd("c3 COPY 1 Nowhere")
    out = c.cmd("c4 UID MOVE 2 Archive")
    assert re.search(rb"\* OK \[COPYUID \d+ 2 3\] moved\r\n\* 2 EXPUNGE\r\nc4 OK", out)
    c.cmd("c5 STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.cmd("c6 UID EXPUNGE 2:5")  # UID 1 is \Deleted but not in the set
    assert len(store.mailbox("alice").messages()) == 1
    assert b"* 1 EXPUNGE" in c.cmd("c7 UID EXPUNGE 1")
    assert b"* STATUS Archive (MESSAGES 3 UIDNEXT 4)" in c.cmd("c8 STATUS Archive (MESSAGES UIDNEXT)")


@pytest.mark.parametrize("chunk", CHUNKS)
def test_append_with_literal_and_literal_plus(store, chunk):
    c = Client(store, chunk)
    c.login()
    msg = b"Subject: appended\r\n\r\nhi\r\n"
    out = c.send(b'p1 APPEND INBOX (\\Seen $Draft) "17-Jul-1996 02:44:25 -0700" {%d}\r\n' % len(msg))
    assert out == b"+ Ready for literal data\r\n"
    out = c.send(msg + b"\r\n")
    assert re.search(rb"p1 OK \[APPENDUID \d+ 3\] APPEND completed", out)
    info = store.mailbox("alice").get(3)
    assert info.flags == {"\\Seen", "$Draft"} and info.internaldate == 837596665.0
    out = c.send(b"p2 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert b"+ Ready" not in out and b"p2 OK [APPENDUID" in out
    assert b"p3 NO [TRYCREATE]" in c.send(b"p3 APPEND Nowhere {2+}\r\nhi\r\n")
    lits = [e for e in c.events if e.kind is Kind.LITERAL and e.command == "APPEND"]
    assert [e.raw for e in lits] == [msg, msg, b"hi"] and lits[0].command == "APPEND"


def test_huge_literal_is_refused_without_reading_it(store):
    c = Client(store)
    c.login()
    out = c.send(b"h1 APPEND INBOX {1073741824}\r\n")
    assert out.startswith(b"h1 NO [TOOBIG]") and b"+ " not in out
    assert b"h2 OK" in c.cmd("h2 NOOP")  # the session goes on
    out = c.send(b"h3 APPEND INBOX {1073741824+}\r\n")
    assert out.startswith(b"* BYE [TOOBIG]") and c.closed


def test_mailbox_management_and_list(store):
    c = Client(store)
    c.login()
    for line in ("m1 CREATE Work", "m2 CREATE Work.Sub", "m3 CREATE Old", "m4 RENAME Old Older", "m5 SUBSCRIBE Work"):
        assert tagged(c.cmd(line), line.split()[0]) == b"OK", line
    out = c.cmd('l1 LIST "" *')
    assert b'* LIST (\\HasNoChildren) "." INBOX' in out and b'* LIST (\\HasChildren) "." Work\r\n' in out
    assert b'"." Work.Sub' in out and b'"." Older' in out
    out = c.cmd('l2 LIST "" %')
    assert b"Work.Sub" not in out and b'"." Work' in out
    assert c.cmd('l3 LIST "" ""').startswith(b'* LIST (\\Noselect) "." ""')
    assert b'* LSUB () "." Work\r\n' in c.cmd('l4 LSUB "" *')
    assert b"m6 NO [ALREADYEXISTS]" in c.cmd("m6 CREATE Work")
    assert b"m7 NO [NONEXISTENT]" in c.cmd("m7 DELETE Nope")
    assert b"m8 OK" in c.cmd("m8 DELETE Older")
    assert b"* NAMESPACE ((\"\" \".\")) NIL NIL" in c.cmd("n1 NAMESPACE")
    assert b"e1 NO [NONEXISTENT]" in c.cmd("e1 SELECT Nope")


@pytest.mark.parametrize("name", ["../../etc", "/etc/passwd", "..", "a/../../b", "~root", "Work*"])
def test_mailbox_names_that_escape_are_refused(store, tmp_path, name):
    c = Client(store)
    c.login()
    for verb in ("SELECT", "CREATE", "DELETE", "STATUS", "APPEND"):
        arg = {"STATUS": " (MESSAGES)", "APPEND": " {2+}\r\nhi"}.get(verb, "")
        out = c.cmd(f'z1 {verb} "{name}"{arg}')
        assert re.search(rb"z1 (NO|BAD)", out), (verb, out)
    assert not (tmp_path / "etc").exists()


def test_close_expunges_silently(store):
    c = Client(store)
    c.login()
    c.select()
    c.cmd("k1 STORE 1 +FLAGS.SILENT (\\Deleted)")
    out = c.cmd("k2 CLOSE")
    assert out == b"k2 OK CLOSE completed, now in the authenticated state\r\n"
    assert c.core.state is State.AUTHENTICATED and len(store.mailbox("alice").messages()) == 1


def test_unselect_keeps_deleted_messages(store):
    c = Client(store)
    c.login()
    c.select()
    c.cmd("k1 STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert c.cmd("k2 UNSELECT").startswith(b"k2 OK")
    assert c.core.state is State.AUTHENTICATED and len(store.mailbox("alice").messages()) == 2
    assert b"k3 BAD" in c.cmd("k3 UNSELECT")


def test_examine_is_read_only(store):
    c = Client(store)
    c.login()
    c.cmd("e1 EXAMINE INBOX")
    c.cmd("e2 FETCH 1 BODY[]")
    assert "\\Seen" not in store.mailbox("alice").get(1).flags
    assert b"e3 NO [READ-ONLY]" in c.cmd("e3 STORE 1 +FLAGS (\\Seen)")
    assert b"e4 NO [READ-ONLY]" in c.cmd("e4 EXPUNGE")


# Every command with wrong arguments gets BAD; in the wrong state, BAD too.
BAD_ARGS = [
    "CAPABILITY x", "NOOP x", "LOGOUT x", "SELECT", "SELECT a b", "EXAMINE", "CREATE", "DELETE", "RENAME a",
    "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LIST a", "LSUB", "STATUS INBOX", "STATUS INBOX (FOO)", "STATUS INBOX ()",
    "APPEND", "APPEND INBOX", "APPEND INBOX (\\Bogus) {1+}\r\nx", 'APPEND INBOX "not a date" {1+}\r\nx',
    "NAMESPACE x", "CHECK x", "CLOSE x", "UNSELECT x", "EXPUNGE x", "FETCH", "FETCH 1", "FETCH 0 FLAGS", "FETCH 1 FOO",
    "FETCH 1 BODY[HEADER.FIELDS]", "FETCH 1 BODY[0]", "FETCH 1 (FLAGS", "FETCH 99 FLAGS", "FETCH x FLAGS",
    "FETCH 1 BODY[]<0.0>", "FETCH 1 BINARY[HEADER]", "STORE", "STORE 1", "STORE 1 FLAGS (", "COPY", "COPY 1",
    "MOVE 1", "UID", "UID FOO 1", "UID FETCH", "UID STORE 1", "UID COPY 1", "UID EXPUNGE", "SEARCH UID",
    "FOO", 'NOOP "unterminated', "NOOP \"bad \\escape\"", "IDLE x", "STARTTLS",
]


@pytest.mark.parametrize("line", BAD_ARGS)
def test_every_command_with_wrong_arguments_gets_bad(store, line):
    c = Client(store)
    c.login()
    c.select()
    out = c.send(b"b1 " + line.encode() + b"\r\n")
    assert re.search(rb"^b1 BAD ", out, re.M), out
    assert b"b2 OK" in c.cmd("b2 NOOP")


@pytest.mark.parametrize("line,state", [
    ("SELECT INBOX", "not authenticated"), ("LIST \"\" *", "not authenticated"), ("FETCH 1 FLAGS", "not authenticated"),
    ("FETCH 1 FLAGS", "authenticated"), ("EXPUNGE", "authenticated"), ("CLOSE", "authenticated"),
    ("LOGIN alice x", "authenticated"), ("AUTHENTICATE PLAIN", "selected"), ("IDLE", "not authenticated"),
])
def test_commands_in_the_wrong_state(store, line, state):
    c = Client(store)
    if state != "not authenticated":
        c.login()
    if state == "selected":
        c.select()
    out = c.cmd("w1 " + line)
    assert out.startswith(b"w1 BAD ") and state.encode() in out
    ev = [e for e in c.events if e.tag == "w1" and e.kind is Kind.COMMAND][0]
    assert [n.rule for n in ev.notes] == ["wrong-state"]


def test_violations_are_noted(store):
    c = Client(store)
    c.cmd("v1 NOOP")
    c.cmd("v1 NOOP")
    c.send(b"v2 NOOP\n")
    c.cmd('v3 LOGIN alice pa"ss')
    c.send(b"garbage\r\n")
    rules = {n.rule for e in c.events for n in e.notes}
    assert {"tag-reuse", "bare-lf", "unquoted-specials", "bad-tag"} <= rules
    c.cmd("v4 LOGOUT")
    assert c.closed and c.core.state is State.LOGOUT
    c.send(b"v5 NOOP\r\n")
    assert c.events[-1].notes[0].rule == "after-logout"


def test_literal_length_mismatch_is_noted(store):
    c = Client(store)
    c.login()
    out = c.send(b"q1 LOGIN {3+}\r\nalicex secret\r\n")
    assert b"q1 BAD" in out or b"q1 NO" in out
    assert any(n.rule == "literal-length-mismatch" for e in c.events for n in e.notes)


def test_logout_sends_bye_before_ok(store):
    c = Client(store)
    c.login()
    c.select()
    assert c.cmd("o1 LOGOUT") == b"* BYE mailtrace IMAP server logging out\r\no1 OK LOGOUT completed\r\n"
    assert isinstance(c.outputs[-1], Close)


def test_long_line_and_eof_midway(store):
    c = Client(store)
    out = c.send(b"x" * 70_000)
    assert out.startswith(b"* BAD line longer")
    c.send(b"yyy\r\n")  # the rest of that line is skipped
    assert b"a1 OK" in c.cmd("a1 NOOP")
    c.send(b"a2 APPEND INBOX {10+}\r\nabc")
    c.core.eof()


def test_starttls_when_available(store):
    c = Client(store, tls_available=True)
    assert b"STARTTLS" in c.cmd("a1 CAPABILITY")
    out = c.core.receive(b"a2 STARTTLS\r\n")
    assert [type(o).__name__ for o in out if not hasattr(o, "kind")] == ["Send", "StartTLS"]
    c.core.tls_started()
    assert b"STARTTLS" not in c.cmd("a3 CAPABILITY")
    assert b"a4 BAD" in c.cmd("a4 STARTTLS")


def test_events_describe_the_dialogue(store):
    c = Client(store)
    c.login()
    c.select()
    c.cmd("f1 FETCH 1 (UID BODY.PEEK[])")
    evs = [e for e in c.events if e.side is Side.SERVER]
    assert all(e.protocol == "imap" for e in c.events)
    exists = [e for e in evs if e.verb == "EXISTS"][0]
    assert exists.tag == "*" and exists.code == ""
    ok = [e for e in evs if e.tag == "S1"][0]
    assert ok.code == "OK" and ok.verb == "SELECT" and ok.response_code == "READ-WRITE" and ok.state == "selected"
    fetch = [e for e in evs if e.verb == "FETCH"]
    lit = [e for e in evs if e.kind is Kind.LITERAL]
    assert fetch[0].raw.endswith(b"{%d}\r\n" % len(SIMPLE)) and lit[0].raw == SIMPLE


def test_bad_tags_and_empty_lines(store):
    c = Client(store)
    assert c.cmd("") == b""
    assert c.cmd("+tag NOOP").startswith(b"* BAD")
    assert c.cmd("onlytag").startswith(b"* BAD")
    assert b"a1 OK" in c.cmd("a1 noop")


def test_core_works_without_a_watchable_change(store):
    core = make_core(store)
    assert core.notify() == []
    close = core.idle_timeout()[-1]
    assert isinstance(close, Close) and close.reason.text == "autologout (RFC 3501 §5.4)"


# -- property tests: random input never raises, every command gets a tagged answer ---------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mailtrace.protocols.imap import COMMANDS, spec  # noqa: E402

_TOKENS = st.sampled_from([b" ", b"(", b")", b"{3}\r\n", b"{2+}\r\n", b'"', b"\\", b"*", b"1:*", b"\r\n", b"\n",
                           b"BODY[", b"]", b"<0.5>", b"INBOX", b"FLAGS", b"a1 ", b"UID ", b"\x00", b"\xff", b"DONE"])


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    s = make_store(tmp_path_factory.mktemp("mail"))
    s.deliver("alice", SIMPLE)
    s.deliver("alice", MULTI)
    yield s
    s.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.one_of(st.binary(max_size=40), _TOKENS, st.sampled_from(sorted(COMMANDS)).map(str.encode)),
                     max_size=30),
       chunk=st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise(shared_store, data, chunk):
    c = Client(shared_store, chunk, tls_available=True)
    c.send(b"r0 EXAMINE INBOX\r\n")  # read-only: random STOREs cannot change the shared store
    c.login()
    c.send(b"r1 EXAMINE INBOX\r\n")
    c.send(b"".join(data))
    c.core.notify()
    c.core.eof()


def _client_in(store, state: str) -> Client:
    """A session brought to "none" (not authenticated), "auth" or "examine" (read-only selected),
    which answers as many BADs as a test sends (no MAX_BAD_COMMANDS cut-off)."""
    c = Client(store, max_bad_commands=1000)
    if state != "none":
        c.login()
    if state == "examine":
        c.cmd("x0 EXAMINE INBOX")
    return c


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(sorted(COMMANDS)), args=st.sampled_from(["", " 1", " INBOX", " 1:* FLAGS", ' "" *',
                                                                     " 1 +FLAGS (\\Seen)", " ALL", " PLAIN"]),
       state=st.sampled_from(["none", "auth", "examine"]))
def test_every_state_command_pair_gets_a_tagged_answer_or_continuation(shared_store, verb, args, state):
    c = _client_in(shared_store, state)
    before = c.core.state
    out = c.cmd(f"t1 {verb}{args}")
    if out.startswith(b"+ "):  # IDLE waits for DONE; AUTHENTICATE for a response ("*" cancels, §6.2.2)
        out = c.cmd("DONE" if verb == "IDLE" else "*")
    m = re.search(rb"^t1 (OK|NO|BAD) ", out, re.M)
    assert m, out
    if not spec.allowed(verb, before):
        assert m[1] == b"BAD"  # RFC 3501 §3: a command in the wrong state is refused
    # the state the connection is in afterwards is the table's (spec.TRANSITIONS), nothing else
    assert c.core.state is spec.TRANSITIONS.next_state(before, verb, spec.outcome(spec.Reply(m[1].decode())))


@pytest.mark.parametrize("state", ["none", "auth", "examine"])
def test_every_command_outside_its_states_gets_bad_and_changes_nothing(shared_store, state):
    c = _client_in(shared_store, state)
    before = c.core.state
    refused = [verb for verb in COMMANDS if not spec.allowed(verb, before)]
    assert refused  # every state refuses some commands (LOGIN once logged in, FETCH before SELECT...)
    for verb in refused:
        out = c.cmd(f"w1 {verb} 1 INBOX")
        assert out.startswith(b"w1 BAD ") and b"not allowed in the " + before.value.encode() in out, out
        assert c.core.state is before


def test_eight_bit_header_goes_as_a_literal_inside_the_envelope(store):
    store.deliver("alice", "Subject: caf\u00e9 cr\u00e8me\r\nFrom: x@lab.test\r\n\r\nbody\r\n".encode())
    c = Client(store)
    c.login()
    c.select()
    out = c.cmd("e1 FETCH 3 (ENVELOPE BODY.PEEK[TEXT])")
    assert "ENVELOPE (NIL {12}\r\ncafé crème (".encode() in out and b"BODY[TEXT] {6}\r\nbody\r\n)\r\n" in out
    lits = [e.raw for e in c.events if e.kind is Kind.LITERAL and e.side is Side.SERVER]
    assert lits == ["café crème".encode(), b"body\r\n"]
    assert b"".join(e.raw for e in c.events if e.side is Side.SERVER and e.tag == "*" and e.verb == "FETCH"
                    or (e.kind is Kind.LITERAL and e.side is Side.SERVER)) == out[:out.index(b"e1 OK")]


def test_event_stamped_keeps_every_field():
    """Event.stamped spells out every field (for speed): a new field must be copied too."""
    import dataclasses

    from mailtrace.transcript.event import Args, Event, MessageRef, Note, Peer, Reason, Tls

    values = dict(side=Side.SERVER, kind=Kind.REPLY, raw=b"r", protocol="imap", verb="FETCH", code="OK", tag="*",
                  state="selected", notes=(Note("x"),), size=9, redacted=b"***", args=Args(mailbox="INBOX"),
                  response_code="UIDVALIDITY", user="u", messages=(MessageRef("read", "u", "INBOX", 1),),
                  continued=True, command="APPEND", spooled=True, incomplete="cut", pipelined=True,
                  arrived="mid-line", partial="* O", scripted=True, unsolicited=True, peer=Peer(client="c"),
                  reason=Reason(text="r"), missing=3, tls=Tls(how="starttls"))
    assert set(values) | {"session", "seq", "t"} == {f.name for f in dataclasses.fields(Event)}
    e = Event(**values).stamped("imap-1", 3, 0.5)
    assert all(getattr(e, k) == v for k, v in values.items()) and (e.session, e.seq, e.t) == ("imap-1", 3, 0.5)


def test_append_runs_as_a_pending_job_and_later_input_waits(store):
    from mailtrace.protocols.base import Pending, send_all

    core = make_core(store)
    core.start()
    core.receive(b"a1 LOGIN bob bob\r\n")
    out = core.receive(b"a2 APPEND INBOX {2+}\r\nhi\r\na3 NOOP\r\n")
    assert isinstance(out[-1], Pending) and b"a3" not in send_all(out)
    assert core.receive(b"a4 NOOP\r\n") == []  # buffered while the delivery runs
    after = out[-1].resume(out[-1].job())
    assert re.findall(rb"^(a\d) OK", send_all(after), re.M) == [b"a2", b"a3", b"a4"]


def test_a_spooled_append_writes_each_part_in_a_store_job(store):
    """A large APPEND literal goes to disk as it arrives, the spool file's creation and each
    part's write a Pending job (off the event loop); input waits meanwhile, so only one part
    is held in memory."""
    from mailtrace.protocols.base import Pending, send_all
    from mailtrace.protocols.imap.spec import SPOOL_LITERAL
    from test_imap_helpers import run_pending

    core = make_core(store)
    core.start()
    core.receive(b"a1 LOGIN bob bob\r\n")
    body = b"Subject: big\r\n\r\n" + b"x" * (SPOOL_LITERAL + 10) + b"\r\n"
    out = core.receive(b"a2 APPEND INBOX {%d+}\r\n" % len(body) + body[:1000])
    assert isinstance(out[-1], Pending)
    spool = core.spools[0]
    assert spool.path is None  # the file is not even created on the caller's (the loop's) thread
    assert core.receive(body[1000:]) == []  # waits in the buffer while the write runs
    written = run_pending([out[-1]])  # the first part's write; then the buffered rest is read, and written
    assert spool.received == len(body) and spool.path.stat().st_size == len(body) - body.count(b"\r\n")  # (stored with LF)
    out = run_pending(core.receive(b"\r\n"))
    assert b"a2 OK [APPENDUID" in send_all(out)
    literal = next(e for e in written if getattr(e, "kind", None) is Kind.LITERAL)
    assert literal.spooled and literal.size == len(body)
    assert store.mailbox("bob", "INBOX").messages()[-1].size == len(body)


@pytest.mark.parametrize("line, answer", [(b'u1 LSUB "" *', b'* LSUB () "." Sent\r\nu1 OK LSUB completed\r\n'),
                                          (b"u1 UNSUBSCRIBE Sent", b"u1 OK UNSUBSCRIBE completed\r\n")])
def test_the_subscriptions_file_is_read_and_written_in_a_store_job(store, line, answer):
    from mailtrace.protocols.base import Pending
    from test_imap_helpers import run_pending

    c = Client(store)
    c.login()
    c.cmd("s0 SUBSCRIBE Sent")
    out = c.core.receive(line + b"\r\n")
    assert isinstance(out[-1], Pending) and send_all(out) == b""
    assert send_all(run_pending(out)) == answer


def test_plaintext_after_starttls_is_dropped_not_run(store):
    c = Client(store, tls_available=True)
    out = c.core.receive(b"a1 STARTTLS\r\na2 LOGIN bob bob\r\n")
    sent = b"".join(o.data for o in out if isinstance(o, Send))
    assert sent == b"a1 OK Begin TLS negotiation now\r\n"
    bad = [e for e in out if getattr(e, "kind", None) is Kind.VIOLATION]
    assert bad[0].notes[0].rule == "starttls-injection" and bad[0].raw == b"a2 LOGIN bob bob\r\n"
    c.core.tls_started()
    assert c.core.state is State.NOT_AUTHENTICATED


def test_every_way_out_stops_watching_the_mailbox(store):
    for leave in (lambda c: c.cmd("z LOGOUT"), lambda c: c.core.idle_timeout(), lambda c: c.core.eof(),
                  lambda c: c.send(b"z APPEND INBOX {99999999999+}\r\n")):
        c = Client(store)
        c.login()
        c.select()
        assert c.core.view is not None
        leave(c)
        assert c.core.view is None


def test_a_doomed_command_gets_bad_instead_of_the_continuation(store):
    c = Client(store)
    out = c.send(b"d1 APPEND INBOX {5}\r\n")  # not logged in: no "+", so the client sends nothing more
    assert out.startswith(b"d1 BAD APPEND is not allowed in the not authenticated state")
    assert c.send(b"d2 FOO {3}\r\n").startswith(b"d2 BAD unknown command")
    assert b"d3 OK" in c.cmd("d3 NOOP")


def test_a_store_job_that_ends_after_the_connection_closed_answers_nothing(store):
    """The lab stops (BYE) while an EXPUNGE's store job runs: the job's work is done, its
    resumption sends nothing and does not fail (the mailbox view is already released)."""
    from mailtrace.protocols.base import Pending

    c = Client(store)
    c.login()
    c.select()
    c.cmd("s1 STORE 1 +FLAGS (\\Deleted)")
    out = c.core.receive(b"x1 EXPUNGE\r\n")
    job = next(o for o in out if isinstance(o, Pending))
    assert b"* BYE server shutting down" in send_all(c.core.shutdown())
    assert job.resume(job.job()) == []
    assert len(store.mailbox("alice", "INBOX").messages()) == 1  # (the expunge itself happened)


def test_every_command_of_the_spec_has_a_handler_and_no_other():
    from mailtrace.protocols.imap.dispatch import HANDLERS

    assert set(HANDLERS) == set(COMMANDS)
    assert all(callable(h) for h in HANDLERS.values())


def test_select_answered_no_leaves_the_selected_state_but_bad_does_not(store):
    """RFC 3501 §6.3.1: "NO - select failure, now in authenticated state"; a BAD ("command
    unknown or arguments invalid") was not run, so the mailbox stays selected."""
    c = Client(store)
    c.login()
    c.select()
    assert tagged(c.cmd("a1 SELECT"), "a1").startswith(b"BAD") and c.core.state is State.SELECTED
    assert tagged(c.cmd("a2 SELECT nosuch"), "a2").startswith(b"NO") and c.core.state is State.AUTHENTICATED


def test_append_without_a_date_takes_the_internaldate_from_the_injected_clock(store):
    """RFC 3501 §6.3.11: without a date-time, the internal date is the time of the APPEND:
    the core asks the clock it was given (it never reads the wall clock itself)."""
    c = Client(store, clock=lambda: 1_000_000_000.0)  # 2001-09-09 01:46:40 UTC
    c.login()
    c.send(b"a1 APPEND INBOX {5+}\r\nhello\r\n")
    c.select()
    reply = c.cmd("a2 FETCH * INTERNALDATE")  # the last message: the one appended
    assert b'"09-Sep-2001 01:46:40 +0000"' in reply, reply


def test_login_ok_lists_the_capabilities_of_the_authenticated_state_without_starttls(tmp_path):
    # RFC 3501 §6.2.1: STARTTLS is a command of the not authenticated state only; the CAPABILITY
    # code of LOGIN's OK (§7.1) lists what the server offers from then on.
    client = Client(make_store(tmp_path), tls_available=True)
    assert b"STARTTLS" in client.cmd("c1 CAPABILITY")
    ok = client.login()
    assert b"L1 OK [CAPABILITY IMAP4rev1 " in ok and b"STARTTLS" not in ok
    assert b"STARTTLS" not in client.cmd("c2 CAPABILITY")


def test_twenty_bad_commands_in_a_row_get_bye_and_the_connection_closed(store):
    """As Dovecot does (and our SMTP and POP3 servers): a fuzzer is cut off; an OK or NO in
    between starts the count again, so a clumsy student typing by hand is not."""
    c = Client(store)
    for i in range(19):
        assert tagged(c.cmd(f"b{i} NONSENSE"), f"b{i}") == b"BAD"
    assert tagged(c.cmd("n1 NOOP"), "n1") == b"OK"  # the count starts again
    for i in range(19):
        c.cmd(f"c{i} FETCH 1 FLAGS")  # (wrong state: BAD too)
    assert not c.core.closed
    out = c.cmd("last NONSENSE")
    assert tagged(out, "last") == b"BAD" and out.endswith(b"* BYE too many bad commands, closing\r\n")
    assert c.core.closed and any(isinstance(o, Close) for o in c.outputs)
    assert [n.rule for e in c.events for n in e.notes if n.rule == "too-many-errors"] == ["too-many-errors"]
    assert c.cmd("more NOOP") == b""  # nothing is answered after the BYE
