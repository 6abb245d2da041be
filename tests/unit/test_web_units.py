"""The web view's pure parts: message links in events, the feed, the HTML sanitizer, the MIME view."""

from __future__ import annotations

import pytest

from mailtrace.transcript.event import Event, Kind, Note, Peer, Side
from mailtrace.transcript.jsonl import event_from_dict, event_to_dict
from mailtrace.transcript.links import Action, MessageRef, refs_of
from mailtrace.web import feed as feed_module
from mailtrace.web.access import Access
from mailtrace.web.feed import WebFeed
from mailtrace.web.messages import explain, summary
from mailtrace.web.sanitize import sanitize_html


def test_message_refs_survive_a_jsonl_transcript():
    refs = [MessageRef(Action.DELIVERED, "bob", "INBOX", 7, "1700000000.M1P2.lab"),
            MessageRef(Action.MOVED, "bob", "Work/2024 \"x\"", 3)]
    event = Event(side=Side.SERVER, kind=Kind.REPLY, raw=b"250 OK\r\n", code="250", messages=tuple(refs))
    assert refs_of(event_from_dict(event_to_dict(event))) == refs
    assert refs_of(Event(side=Side.SERVER, kind=Kind.REPLY)) == []
    # a version-1 line whose "messages" is not JSON (an edited file): read as no references
    v1 = {"side": "S", "kind": "reply", "raw": "250 OK\r\n", "code": "250", "info": {"messages": "not json"}}
    assert refs_of(event_from_dict(v1, version=1)) == []


def _events(sid: str, *, user: str = "", refs=(), notes=()):
    yield Event(side=Side.NONE, kind=Kind.OPEN, protocol="imap", session=sid,
                peer=Peer(client="127.0.0.1:1", server="127.0.0.1:2", mode="lab", started=100.5))
    yield Event(side=Side.CLIENT, kind=Kind.COMMAND, protocol="imap", session=sid, raw=b"a LOGIN x y\r\n",
                verb="LOGIN", notes=tuple(notes), seq=1, t=0.1)
    yield Event(side=Side.SERVER, kind=Kind.REPLY, protocol="imap", session=sid, raw=b"a OK\r\n", code="OK",
                user=user, messages=tuple(refs), state="authenticated", seq=2, t=0.2)
    yield Event(side=Side.NONE, kind=Kind.CLOSE, protocol="imap", session=sid, seq=3, t=0.3)


def test_feed_summaries_owners_and_life():
    feed = WebFeed()
    ref = MessageRef(Action.READ, "bob", "INBOX", 4)
    for event in [*_events("imap-1", user="bob", refs=[ref], notes=[Note("bad-tag")]), *_events("smtp-2", refs=[
            MessageRef(Action.DELIVERED, "carol", "INBOX", 1)])]:
        feed.handle(event)
    one = feed.sessions["imap-1"]
    assert (one.user, one.state, one.closed, one.violations, one.events, one.started) == \
        ("bob", "authenticated", True, 1, 4, 100.5)
    assert one.owners() == {"bob"} and feed.sessions["smtp-2"].owners() == {"carol"}
    assert [(e.session, e.ref) for e in feed.life_of("bob", "INBOX", 4)] == [("imap-1", ref)]
    access = Access(check_password=lambda u, p: p == u + "-pw", admin="teacher")
    assert access.may_see_session("bob", one.owners()) and not access.may_see_session("carol", one.owners())
    assert access.may_see_session("teacher", one.owners()) and not access.may_see_session(None, one.owners())
    assert access.authenticate("Bob", "bob-pw") == "bob" and access.authenticate("bob", "x") is None
    assert access.user_of_token(access.token("bob")) == "bob"
    assert access.user_of_token("teacher:" + "0" * 64) is None


def test_feed_memory_budget_drops_old_closed_sessions_first(monkeypatch):
    monkeypatch.setattr(feed_module, "MAX_BYTES", 1000)
    feed = WebFeed()
    big = b"x" * 300
    for sid in ("s-1", "s-2"):
        feed.handle(Event(side=Side.NONE, kind=Kind.OPEN, session=sid, protocol="smtp"))
        feed.handle(Event(side=Side.CLIENT, kind=Kind.DATA, session=sid, protocol="smtp", raw=big))
        feed.handle(Event(side=Side.NONE, kind=Kind.CLOSE, session=sid, protocol="smtp"))
    feed.handle(Event(side=Side.NONE, kind=Kind.OPEN, session="s-3", protocol="smtp"))
    for _ in range(2):
        feed.handle(Event(side=Side.CLIENT, kind=Kind.DATA, session="s-3", protocol="smtp", raw=big))
    assert feed.events["s-1"] == [] and feed.sessions["s-1"].dropped == 3
    assert len(feed.events["s-3"]) == 3 and feed.sessions["s-3"].dropped == 0


@pytest.mark.parametrize("payload", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<a href='javascript:alert(1)'>x</a>",
    "<a href=' java\tscript:alert(1)'>x</a>", "<svg onload=alert(1)>", "<iframe src=//evil.example></iframe>",
    "<body onload=alert(1)>", "<style>@import 'http://evil.example/x.css'</style>", "<math><mtext><script>1</script>",
    "<img src='http://tracker.example/pixel.gif'>", "<form action=//evil.example><input></form>",
    "<p style='background:url(http://evil.example)'>x</p>", "<scr<script>ipt>alert(1)</script>",
    "<object data=x.swf></object>", "<meta http-equiv=refresh content='0;url=//evil.example'>",
])
def test_sanitizer_removes_active_content(payload):
    out = sanitize_html(f"<p>before</p>{payload}<p>after</p>").lower()
    for bad in ("<script", "onerror", "onload", "javascript:", "evil.example", "tracker.example", "<iframe", "<svg",
                "<style", "<form", "<object", "<meta", "style="):
        assert bad not in out, (payload, out)
    assert "before" in out


def test_sanitizer_keeps_formatting_and_escapes_text():
    out = sanitize_html('<p>Hi <b>you</b> &lt;3 <a href="https://lab.test/x?a=1&amp;b=2">link</a>'
                        '<img src="cid:logo@lab" alt="logo"></p>')
    assert out == ('<p>Hi <b>you</b> &lt;3 <a href="https://lab.test/x?a=1&amp;b=2" rel="noopener noreferrer" '
                   'target="_blank">link</a><img src="cid:logo@lab" alt="logo"></p>')


MULTIPART = (b"From: =?utf-8?q?Jos=C3=A9?= <jose@lab.test>\r\nTo: bob@lab.test\r\nSubject: =?utf-8?b?w5FhbmTDug==?=\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"Ma=C3=B1ana\r\n--b1\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
             b"Content-Disposition: attachment; filename=\"dot.png\"\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n")


def test_message_explained_mime_tree_encoded_and_decoded():
    assert summary(MULTIPART) == {"from": "José <jose@lab.test>", "to": "bob@lab.test", "subject": "Ñandú", "date": ""}
    data = explain(MULTIPART, "es")
    mime = data["mime"]
    assert mime["type"] == "multipart/mixed" and [c["path"] for c in mime["children"]] == ["1", "2"]
    text, image = mime["children"]
    assert (text["encoding"], text["encoded"].strip(), text["decoded"].strip()) == \
        ("quoted-printable", "Ma=C3=B1ana", "Mañana")
    assert (image["type"], image["disposition"], image["filename"], image["decoded_size"]) == \
        ("image/png", "attachment", "dot.png", 8)
    assert data["text"].strip() == "Mañana" and not data["has_html"]
    subject = next(h for h in data["headers"] if h["name"] == "Subject")
    assert subject["rfc"] == "RFC 5322 §3.6.5" and "asunto" in subject["meaning"].lower()
