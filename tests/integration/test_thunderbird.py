"""Thunderbird (headless, a throwaway profile) reads bob's mail from the lab over IMAP and POP3.

Issue 19: a real mail client must log in, fetch five messages and get no NO, BAD or -ERR.
Skipped when Thunderbird is not installed (``apt-get install thunderbird``).  The profile is
written as the account wizard would (``tests/thunderbird_support.py``); Thunderbird is stopped
by its PID at the end, whatever happened.
"""

from __future__ import annotations

import smtplib

import shutil

import pytest

import thunderbird_support as tb
from mailtrace.tls import paths as tls_paths
from mailtrace.transcript.event import Kind
from mailtrace.transcript.text import render_text

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(tb.thunderbird() is None, reason="thunderbird is not installed "
                                 "(apt-get install thunderbird)")]

ERRORS = {"NO", "BAD", "-ERR"}


def fetched_imap(events) -> set[str]:
    """Message numbers whose whole message (BODY[]) an IMAP FETCH response carried."""
    return {e.raw.split()[1].decode() for e in events
            if e.kind is Kind.REPLY and e.raw.startswith(b"* ") and b" FETCH (" in e.raw and b"BODY[]" in e.raw}


def fetched_pop3(events) -> set[str]:
    """Messages a RETR was answered +OK for."""
    numbers, done = {}, set()
    for e in events:
        if e.kind is Kind.COMMAND and e.verb == "RETR":
            numbers[e.session] = e.raw.split()[1].decode()
        elif e.kind is Kind.REPLY and e.verb == "RETR" and e.code == "+OK":
            done.add(numbers.get(e.session, ""))
    return done


@pytest.mark.parametrize("protocol, starttls", [("imap", False), ("imap", True), ("pop3", False)],
                         ids=["imap", "imap-starttls", "pop3"])
def test_thunderbird_reads_five_messages_with_no_error_reply(lab_factory, tmp_path, protocol, starttls):
    if starttls and shutil.which("certutil") is None:
        pytest.skip("certutil is not installed (apt-get install libnss3-tools): the lab CA cannot be trusted")
    lab = lab_factory(("smtp", "pop3", "imap"))
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=30) as smtp:
        for n in range(1, 6):
            smtp.sendmail("alice@lab.test", ["bob@lab.test"],
                          f"From: Alice <alice@lab.test>\r\nTo: Bob <bob@lab.test>\r\nSubject: message {n}\r\n"
                          f"Date: Mon, 7 Dec 2026 12:00:0{n} +0000\r\nMessage-ID: <tb{n}@lab.test>\r\n\r\n"
                          f"Body {n}\r\n")
    profile, home = tmp_path / "profile", tmp_path / "home"
    home.mkdir()
    tb.make_profile(profile, protocol=protocol, port=lab.port(protocol), user="bob", password="bob",
                    socket_type=2 if starttls else 0)
    if starttls:  # Thunderbird verifies the lab's certificate against the lab CA, trusted in the profile
        tb.trust_ca(profile, tls_paths(lab.directory).ca_cert)
    proc = tb.start(profile, home, tmp_path / "thunderbird.log")
    fetched = fetched_imap if protocol == "imap" else fetched_pop3
    try:
        lab.wait_for(lambda evs: fetched([e for e in evs if e.protocol == protocol]) >= {"1", "2", "3", "4", "5"},
                     timeout=120)
    finally:
        tb.stop(proc)
    events = [e for e in lab.events if e.protocol == protocol]
    errors = [e.raw for e in events if e.kind is Kind.REPLY and e.code in ERRORS]
    assert errors == [], render_text(events)
    logins = [e for e in events if e.kind is Kind.REPLY and e.code in ("OK", "+OK")
              and e.verb in ("AUTHENTICATE", "LOGIN", "PASS", "APOP")]
    assert logins, "Thunderbird never logged in"
    if starttls:
        assert any(e.kind is Kind.TLS for e in events), "no STARTTLS"
        for e in events:  # every login came after that session's TLS handshake (RFC 3501 §6.2.1)
            if e.kind is Kind.COMMAND and e.verb in ("AUTHENTICATE", "LOGIN"):
                assert any(t.kind is Kind.TLS and t.session == e.session and t.seq < e.seq for t in events)
