"""Reply texts are 7-bit ASCII on the wire, even though ours cite RFC sections with "§"
(RFC 5321 §4.2, RFC 1939 §3, RFC 3501 §9 text): a client that never asked for UTF-8 must not
receive a non-ASCII octet from the server's own words."""

from __future__ import annotations

import pytest

from conversation import Conversation, lab_core

BAD_SESSIONS = {
    "smtp": ["BOGUS", "MAIL FROM:<a@b>", "EHLO x", "RCPT TO:<bob@lab.test>", "DATA", "MAIL FROM:bad",
             "RCPT TO:<nobody@elsewhere.example>", "AUTH PLAIN !!!", "VRFY", "HELO", "RSET x", "QUIT"],
    "pop3": ["BOGUS", "STAT", "USER b\x00ob", "PASS x", "USER alice", "PASS wrong", "APOP x y", "USER alice",
             "PASS alice", "RETR 99", "DELE x", "TOP 1", "LIST 1 2", "UIDL 0", "AUTH BOGUS", "QUIT"],
    "imap": ["a1 BOGUS", "a2 SELECT INBOX", "a3 LOGIN", "a4 AUTHENTICATE PLAIN", "!!!", "a5 LOGIN alice alice",
             "a6 FETCH 1 BODY[]", "a7 SELECT nosuch", "a8 SELECT INBOX", "a9 FETCH x y", "b1 STORE 1 FLAGS",
             "b2 SEARCH CHARSET X ALL", "b3 UID BOGUS", "b4 IDLE", "nope", "b5 LOGOUT"],
}


@pytest.mark.parametrize("protocol", sorted(BAD_SESSIONS))
def test_every_reply_of_a_bad_session_is_ascii(protocol, tmp_path):
    session = Conversation(lab_core(protocol, tmp_path))
    session.lines(*BAD_SESSIONS[protocol])
    sent = session.sent
    assert b"section " in sent or protocol == "smtp"  # the RFC citations are still there, spelled out
    bad = [line for line in sent.split(b"\r\n") if any(octet > 0x7F for octet in line)]
    assert not bad, f"non-ASCII reply lines: {bad[:5]}"
