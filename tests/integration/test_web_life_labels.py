"""The life of a message in the web view says what each session took from it: a FETCH of FLAGS or
UID only is no reading; BODY[]/RFC822/BODY[TEXT] read it and set \\Seen; BODY.PEEK reads it without
setting \\Seen; ENVELOPE or a header section take the header only (RFC 3501 §6.4.5); POP3 TOP n 0 is
the header only (RFC 1939 §7).  Real lab, real imaplib and poplib clients, real HTTP."""

from __future__ import annotations

import imaplib
import poplib

import pytest

pytest.importorskip("aiohttp")

from web_support import get, make_web_lab, send_mail  # noqa: E402

# (FETCH items, the life step it adds, or None for no step), in the order they are sent
FETCHES = [
    ("(FLAGS)", None), ("(UID FLAGS)", None), ("FAST", None), ("(FLAGS RFC822.SIZE INTERNALDATE)", None),
    ("(ENVELOPE)", "header"), ("(UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])", "header"),
    ("(BODY.PEEK[])", "peeked"), ("(FLAGS BODY.PEEK[TEXT])", "peeked"),
    ("(BODY[TEXT])", "read_seen"), ("(FLAGS RFC822)", "read_seen"),
]


def test_each_fetch_and_top_is_named_for_what_it_took(lab_factory):
    lab = make_web_lab(lab_factory)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "Hola", text="one\ntwo\nthree\n")
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "bob")
    imap.select("INBOX")
    for items, _ in FETCHES:
        assert imap.fetch("1", items)[0] == "OK", items
    assert imap.uid("FETCH", "1:*", "(FLAGS)")[0] == "OK"  # UID FETCH of flags: still no reading
    imap.logout()
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"))
    pop.user("bob")
    pop.pass_("bob")
    pop.top(1, 0)
    pop.top(1, 2)
    pop.retr(1)
    pop.quit()
    lab.wait_closed(3)
    uid = lab.wait_for(lambda _: (get(url + "api/mailboxes/bob/messages?mailbox=INBOX")[2] or [None])[0])["uid"]
    life = lab.wait_for(lambda _: (lambda m: len(m["life"]) >= 10 and m["life"])(
        get(url + f"api/messages/bob/{uid}?mailbox=INBOX")[2]))
    steps = [(step["protocol"], step["verb"], step["action"]) for step in life]
    assert steps[0] == ("smtp", "DATA", "delivered")
    assert [s for s in steps if s[0] == "imap"] == [("imap", "FETCH", how) for _, how in FETCHES if how]
    assert [s for s in steps if s[0] == "pop3"] == [("pop3", "TOP", "header"), ("pop3", "TOP", "top"),
                                                     ("pop3", "RETR", "read")]
    for lang in ("en", "es"):  # every step has its words in the page's texts
        texts = get(url + f"api/me?lang={lang}")[2]["texts"]
        assert all(texts.get("action_" + action) for *_, action in steps), lang
    assert "\\Seen" in texts["action_peeked"] and "\\Seen" in texts["action_read_seen"]
