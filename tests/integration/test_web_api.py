"""The web view's JSON API and safety, driven over real HTTP (urllib) against a real lab.

Browsers come in test_web_browser.py; here: the API answers, links a message to the sessions
that delivered and fetched it, escapes/sanitizes hostile content, and keeps students apart.
"""

from __future__ import annotations

import imaplib
import poplib

import pytest

pytest.importorskip("aiohttp")

from web_support import XSS, get, make_web_lab, send_mail  # noqa: E402


def _wait_sessions(lab, url, n, auth=None):
    return lab.wait_for(lambda _: (lambda s: len(s) >= n and s)(get(url + "api/sessions", auth)[2]) or None)


def test_sessions_events_downloads_and_life_of_a_message(lab_factory):
    lab = make_web_lab(lab_factory)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "Hola", text="caf\u00e9 au lait " * 20)
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "bob")
    imap.select("INBOX")
    imap.fetch("1", "(RFC822)")
    imap.store("1", "+FLAGS", "\\Flagged")
    imap.create("Archive")
    imap.copy("1", "Archive")
    imap.logout()
    lab.wait_closed(2)
    sessions = _wait_sessions(lab, url, 2)
    by_proto = {s["protocol"]: s for s in sessions}
    assert by_proto["imap"]["user"] == "bob" and by_proto["smtp"]["closed"]

    status, _, detail = get(url + f"api/sessions/{by_proto['smtp']['id']}")
    assert status == 200
    verbs = [e.get("verb") for e in detail["events"] if e["kind"] == "command"]
    assert verbs[:1] == ["EHLO"] and "DATA" in verbs
    assert any(e.get("meaning") for e in detail["events"])  # annotated from knowledge/

    for fmt, marker in (("jsonl", b'"mailtrace-transcript"'), ("txt", b"C: MAIL FROM:<alice@lab.test>"),
                        ("html", b"<div class=ladder>"), ("pcap", b"\xd4\xc3\xb2\xa1")):
        status, headers, body = get(url + f"api/sessions/{by_proto['smtp']['id']}/download/{fmt}", raw=True)
        assert status == 200 and marker.lower() in body.lower(), fmt
        assert "attachment" in headers["Content-Disposition"]

    status, _, boxes = get(url + "api/mailboxes")
    assert {"user": "bob", "mailbox": "INBOX", "messages": 1} in boxes
    assert {"user": "bob", "mailbox": "Archive", "messages": 1} in boxes
    status, _, listing = get(url + "api/mailboxes/bob/messages?mailbox=INBOX")
    assert listing[0]["subject"] == "Hola" and "\\Flagged" in listing[0]["flags"]
    uid = listing[0]["uid"]
    status, _, message = get(url + f"api/messages/bob/{uid}?mailbox=INBOX")
    names = [h["name"].lower() for h in message["headers"]]
    assert names[:2] == ["return-path", "received"]  # trace fields the lab's SMTP server added
    received = message["headers"][1]
    assert received["trace"] and received["rfc"].startswith("RFC 5321 §4.4")
    assert message["mime"]["type"] == "text/plain" and message["mime"]["encoding"] == "quoted-printable"
    assert "caf=C3=A9" in message["mime"]["encoded"] and "caf\u00e9" in message["mime"]["decoded"]
    life = [(step["protocol"], step["action"]) for step in message["life"]]
    assert life[0] == ("smtp", "delivered")
    assert ("imap", "read_seen") in life and ("imap", "flagged") in life and ("imap", "copied") in life  # RFC822: \\Seen
    assert {step["session"] for step in message["life"]} == {by_proto["smtp"]["id"], by_proto["imap"]["id"]}
    archived = get(url + "api/mailboxes/bob/messages?mailbox=Archive")[2][0]["uid"]
    copy_life = get(url + f"api/messages/bob/{archived}?mailbox=Archive")[2]["life"]
    assert [(s["protocol"], s["action"]) for s in copy_life][0] == ("smtp", "delivered")  # inherited
    assert copy_life[-1]["action"] == "arrived"


def test_pop3_retrieval_and_deletion_are_in_the_life(lab_factory):
    lab = make_web_lab(lab_factory)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "bob@lab.test", "alice@lab.test", "pull me")
    status, _, listing = get(url + "api/mailboxes/alice/messages?mailbox=INBOX")
    uid = listing[0]["uid"]
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"))
    pop.user("alice")
    pop.pass_("alice")
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    lab.wait_closed(2)
    # the message is gone from the store after QUIT: its life stays in the sessions' events
    sessions = _wait_sessions(lab, url, 2)
    pop_id = next(s["id"] for s in sessions if s["protocol"] == "pop3")
    status, _, detail = get(url + f"api/sessions/{pop_id}")
    refs = [ref[:4] for e in detail["events"] for ref in e.get("messages", [])]  # JSONL v2: typed
    assert ["read", "alice", "INBOX", uid] in refs
    assert ["deleted", "alice", "INBOX", uid] in refs
    assert get(url + f"api/messages/alice/{uid}?mailbox=INBOX")[0] == 404  # gone after QUIT (RFC 1939 §6)


def test_hostile_message_is_escaped_and_sanitized(lab_factory):
    lab = make_web_lab(lab_factory)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "Hi " + XSS, text="plain " + XSS,
              html=f"<p>hello</p>{XSS}<a href='javascript:alert(1)'>x</a><img src='http://tracker.example/p.gif'>")
    status, _, listing = get(url + "api/mailboxes/bob/messages?mailbox=INBOX")
    uid = listing[0]["uid"]
    status, headers, page = get(url + f"api/messages/bob/{uid}/html?mailbox=INBOX", raw=True)
    assert status == 200 and b"hello" in page
    for bad in (b"<script", b"onerror", b"javascript:", b"tracker.example"):
        assert bad not in page.lower(), bad
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    status, headers, raw = get(url + f"api/messages/bob/{uid}/raw?mailbox=INBOX", raw=True)
    assert headers["Content-Type"].startswith("text/plain") and "sandbox" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = get(url, raw=True)
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_classroom_students_see_only_their_own(lab_factory):
    users = {"alice": "a-pw", "bob": "b-pw", "teacher": "t-pw"}
    lab = make_web_lab(lab_factory, admin="teacher", users=users)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "for bob", login=("alice", "a-pw"))
    send_mail(lab.port("smtp"), "x@lab.test", "alice@lab.test", "for alice")
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "b-pw")
    imap.logout()
    lab.wait_closed(3)

    assert get(url + "api/sessions")[0] == 401  # nobody logged in
    assert get(url + "api/sessions", ("bob", "wrong"))[0] == 401
    status, headers, _ = get(url, raw=True)
    assert status == 200 and b"login" in _  # urllib followed the redirect to the login form

    everything = _wait_sessions(lab, url, 3, ("teacher", "t-pw"))
    bob_sees = get(url + "api/sessions", ("bob", "b-pw"))[2]
    alice_sees = get(url + "api/sessions", ("alice", "a-pw"))[2]
    assert {s["user"] for s in bob_sees} == {"bob"}  # his IMAP login only (alice's SMTP AUTH is hers)
    assert all(s["user"] in ("alice", "") for s in alice_sees) and len(alice_sees) == 2
    for s in everything:
        if s not in bob_sees:
            assert get(url + f"api/sessions/{s['id']}", ("bob", "b-pw"))[0] == 404
            assert get(url + f"api/sessions/{s['id']}/ladder", ("bob", "b-pw"))[0] == 404
            assert get(url + f"api/sessions/{s['id']}/download/jsonl", ("bob", "b-pw"))[0] == 404
    assert {b["user"] for b in get(url + "api/mailboxes", ("bob", "b-pw"))[2]} == {"bob"}
    assert get(url + "api/mailboxes/alice/messages?mailbox=INBOX", ("bob", "b-pw"))[0] == 404
    alice_uid = get(url + "api/mailboxes/alice/messages?mailbox=INBOX", ("alice", "a-pw"))[2][0]["uid"]
    for path in ("", "/raw", "/html"):
        assert get(url + f"api/messages/alice/{alice_uid}{path}?mailbox=INBOX", ("bob", "b-pw"))[0] == 404
    assert {b["user"] for b in get(url + "api/mailboxes", ("teacher", "t-pw"))[2]} == {"alice", "bob", "teacher"}


def test_spanish_texts_and_annotations(lab_factory):
    lab = make_web_lab(lab_factory)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "hola")
    lab.wait_closed(1)
    me = get(url + "api/me?lang=es")[2]
    assert me["lang"] == "es" and me["texts"]["sessions"] == "Sesiones"
    sid = _wait_sessions(lab, url, 1)[0]["id"]
    es = get(url + f"api/sessions/{sid}?lang=es")[2]["events"]
    en = get(url + f"api/sessions/{sid}?lang=en")[2]["events"]
    mail_es = next(e for e in es if e.get("verb") == "MAIL" and e["kind"] == "command")
    mail_en = next(e for e in en if e.get("verb") == "MAIL" and e["kind"] == "command")
    assert mail_es["meaning"] != mail_en["meaning"] and "remitente" in mail_es["meaning"]


def test_live_channel_tells_a_student_only_their_sessions(lab_factory):
    import base64
    import json
    import urllib.request

    users = {"alice": "a-pw", "bob": "b-pw", "teacher": "t-pw"}
    lab = make_web_lab(lab_factory, admin="teacher", users=users)
    request = urllib.request.Request(lab.web_view.url + "api/stream")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"bob:b-pw").decode())
    stream = urllib.request.urlopen(request, timeout=10)
    assert stream.readline().startswith(b": mailtrace live channel")
    send_mail(lab.port("smtp"), "alice@lab.test", "alice@lab.test", "mine", login=("alice", "a-pw"))
    lab.wait_closed(1)
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "b-pw")
    imap.logout()
    told = []
    for _ in range(200):  # bounded: until bob's own session is told
        line = stream.readline()
        if line.startswith(b"data: "):
            told += json.loads(line[6:])
            if any(s["protocol"] == "imap" and s["closed"] for s in told):
                break
    stream.close()
    assert told and {s["user"] for s in told} == {"bob"}


def test_a_long_session_shows_its_latest_lines(lab_factory, monkeypatch):
    from mailtrace.web import server

    monkeypatch.setattr(server, "LADDER_MAX_EVENTS", 6)
    lab = make_web_lab(lab_factory)
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "long")
    lab.wait_closed(1)
    sid = _wait_sessions(lab, lab.web_view.url, 1)[0]["id"]
    status, _, body = get(lab.web_view.url + f"api/sessions/{sid}/ladder", raw=True)
    assert b"earlier lines not shown here" in body and b"closing connection" in body and b"ESMTP" not in body
    status, _, full = get(lab.web_view.url + f"api/sessions/{sid}/download/html", raw=True)
    assert b"ESMTP" in full  # the download has it all


def test_passwords_stay_hidden_on_every_view(lab_factory):
    import base64

    users = {"alice": "s3cret-pw", "bob": "bob"}
    lab = make_web_lab(lab_factory, users=users)
    url = lab.web_view.url
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "hi", login=("alice", "s3cret-pw"))
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"))
    pop.user("bob")
    pop.pass_("bob")
    pop.quit()
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("alice", "s3cret-pw")
    imap.logout()
    lab.wait_closed(3)
    secrets = (b"s3cret-pw", base64.b64encode(b"\0alice\0s3cret-pw"), b"PASS bob")
    for s in _wait_sessions(lab, url, 3):
        for path in ("", "/ladder", "/download/jsonl", "/download/txt", "/download/html", "/download/pcap"):
            status, _, body = get(url + f"api/sessions/{s['id']}{path}", raw=True)
            assert status == 200 and not any(secret in body for secret in secrets), (s["id"], path)


def test_https_with_the_lab_certificate(lab_factory):
    """Off loopback the web view speaks HTTPS with the lab's certificate (here forced on loopback)."""
    import urllib.request

    from mailtrace.netaddr import is_loopback
    from mailtrace.web import WebSettings, start_for_lab
    from mailtrace.web.feed import WebFeed

    assert WebSettings("0.0.0.0", 0).https is None and not is_loopback("0.0.0.0")  # None: by the host
    lab = lab_factory(("smtp",), tls=True)
    view = lab.call(start_for_lab(WebSettings("127.0.0.1", 0, https=True, feed=WebFeed()), lab.lab))
    try:
        assert view.url.startswith("https://")
        port = view.port
        with urllib.request.urlopen(f"https://localhost:{port}/api/me", context=lab.client_tls_context(),
                                    timeout=10) as resp:
            assert resp.status == 200
        with pytest.raises(OSError):  # no plain HTTP there (ssl.SSLError or a dropped connection)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/me", timeout=10).read()
    finally:
        lab.call(view.stop())


def test_live_channel_says_the_close_reason_in_the_viewers_language(lab_factory):
    import json
    import urllib.request

    lab = make_web_lab(lab_factory)
    stream = urllib.request.urlopen(lab.web_view.url + "api/stream?lang=es", timeout=10)
    assert stream.readline().startswith(b": mailtrace live channel")
    send_mail(lab.port("smtp"), "alice@lab.test", "bob@lab.test", "hola")
    closed = None
    for _ in range(200):  # bounded: until the SMTP session is told closed
        line = stream.readline()
        if line.startswith(b"data: "):
            closed = next((s for s in json.loads(line[6:]) if s["closed"]), None)
            if closed:
                break
    stream.close()
    assert closed and closed["close_reason"] and "QUIT" in closed["close_reason"]
    assert "envió" in closed["close_reason"] and "sent" not in closed["close_reason"]
    assert "_close" not in closed and "_owners" not in closed
