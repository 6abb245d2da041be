"""tests/conversation.py drives the three lab cores the same way, and a script that does not
match what the server says fails with the transcript so far."""

from __future__ import annotations

import pytest

from conversation import Conversation, converse, lab_core


def test_one_script_style_for_smtp_pop3_and_imap(tmp_path):
    smtp = converse(lab_core("smtp", tmp_path / "s"), "<220 ", ">EHLO client.test", "<250-", ">MAIL FROM:<a@x.test>",
                    "<250 ", ">RCPT TO:<bob@lab.test>", "<250 ", ">DATA", "<354 ", ">Subject: hi\r\n\r\nhello\r\n.",
                    "<250 ", ">QUIT", "<221 ")
    assert smtp.closed and smtp.codes()[-1] == "221"
    pop3 = converse(lab_core("pop3", tmp_path / "p"), "<+OK", ">USER alice", "<+OK", ">PASS alice", "<+OK",
                    ">STAT", "<+OK ", ">QUIT", "<+OK")
    assert pop3.closed
    imap = converse(lab_core("imap", tmp_path / "i"), "<* OK", ">a1 LOGIN alice alice", "<a1 OK",
                    ">a2 SELECT INBOX", "<* ", ">a3 LOGOUT", "<* BYE", "<a3 OK")
    assert imap.closed and imap.state


def test_byte_by_byte_gives_the_same_events(tmp_path):
    script = ("HELO a.test", "MAIL FROM:<a@a.test>", "RCPT TO:<bob@lab.test>", "QUIT")
    whole, bytewise = Conversation(lab_core("smtp", tmp_path / "w")), Conversation(lab_core("smtp", tmp_path / "b"), chunk=1)
    whole.lines(*script)
    bytewise.lines(*script)
    assert [(e.kind, e.raw) for e in whole.events] == [(e.kind, e.raw) for e in bytewise.events]
    assert whole.sent.count(b"\r\n") == 5


def test_a_line_the_server_did_not_send_fails_with_the_transcript(tmp_path):
    with pytest.raises(AssertionError, match=r"(?s)expected a line starting '354 '.*C: MAIL FROM"):
        converse(lab_core("smtp", tmp_path), "<220 ", ">MAIL FROM:<a@x.test>", "<354 ")
    with pytest.raises(AssertionError, match="the server sent nothing more"):
        converse(lab_core("smtp", tmp_path), "<220 ", "<250 ")
    with pytest.raises(ValueError):
        converse(lab_core("smtp", tmp_path), "EHLO x")
