"""Postfix as alice's MTA relaying into the lab (issue 19): real MTA, real queue, real bounces.

A throwaway Postfix (``tests/postfix_support.py``: ``postfix -c DIR``, everything in a
temporary folder, ``relayhost`` = the lab, loopback only) receives messages from its own
``sendmail`` and relays them into ``mailtrace lab``.  Each message is compared byte for byte
with what the lab hands out: the lab's and Postfix's trace fields (Return-Path, Received) on
top of exactly the message submitted.  The comparison is made on the wire form (CRLF line
ends), as POP3 RETR returns it, so it holds whatever line ends the Maildir uses on disk: the
submitted message is normalised to CRLF deliberately (Postfix's sendmail takes LF, SMTP
sends CRLF, RFC 5321 §2.3.8).

Root only (Postfix's master runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import os
import poplib
import random
import re
import shutil

import pytest

from mailtrace.tls import paths as tls_paths
from mailtrace.transcript.event import Kind
from mailtrace.transcript.text import render_text
from postfix_support import PostfixInstance

pytestmark = [
    pytest.mark.skipif(shutil.which("postfix") is None and not os.path.exists("/usr/sbin/postfix"),
                       reason="postfix is not installed (apt-get install postfix)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="root only: a Postfix instance's master runs as root"),
]

USERS = {"alice": "alice", "bob": "bob", "carol": "carol", "josé": "josé"}
DATE = "Date: Mon, 7 Dec 2026 12:00:00 +0000\n"


def message(subject: str, to: str, body: str, message_id: str, extra: str = "") -> bytes:
    """A message as a user agent hands it to sendmail (LF line ends, complete header)."""
    return (f"From: Alice <alice@lab.test>\nTo: {to}\nSubject: {subject}\n{DATE}"
            f"Message-ID: <{message_id}@mta.example>\n{extra}\n{body}").encode()


def attachment_message(size: int) -> bytes:
    data = random.Random(19).randbytes(size)
    encoded = base64.encodebytes(data).decode()  # 76-character lines
    return message("Informe con anexo", "bob@lab.test", "", "attach",
                   'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n') + (
        "--b1\nContent-Type: text/plain; charset=us-ascii\n\nSee the attachment.\n\n"
        "--b1\nContent-Type: application/octet-stream; name=\"informe.bin\"\n"
        "Content-Transfer-Encoding: base64\n\n" + encoded + "--b1--\n").encode()


def wire(data: bytes) -> bytes:
    """CRLF line ends (RFC 5321 §2.3.8): what SMTP carries and what POP3 RETR returns."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def assert_relayed_as_sent(stored: bytes, sent: bytes) -> None:
    """``stored`` is ``sent`` byte for byte, under trace fields only (Return-Path, Received)."""
    sent = wire(sent)
    assert stored.endswith(sent), "the message changed on its way"
    trace = stored[:-len(sent)]
    names = re.findall(rb"^([^\s:]+):", trace, re.M)
    assert names == [b"Return-Path", b"Received", b"Received"], names  # the lab's, then Postfix's


def pop3_messages(lab, user: str, password: str, *, utf8: bool = False) -> list[bytes]:
    """Every message of a mailbox as a real POP3 client (poplib) retrieves it, CRLF form."""
    client = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=30)
    try:
        if utf8:
            client.utf8()  # RFC 6856 §2.1: before logging in
        client.user(user)
        client.pass_(password)
        count = len(client.list()[1])
        return [b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, count + 1)]
    finally:
        client.quit()


def stored(lab, user: str) -> list[bytes]:
    """The messages of a mailbox in wire form (CRLF), read from the store (what RETR sends)."""
    box = lab.store.mailbox(user)
    box.refresh()
    return [box.read(m.uid) for m in box.messages()]


def notes(lab) -> list[tuple[str, str, str]]:
    return [(e.session, e.raw[:40].decode(errors="replace"), n.rule) for e in lab.events for n in e.notes]


@pytest.fixture
def relay(lab_factory):
    """(lab, start) where ``start(tls=...)`` gives a running Postfix relaying into the lab."""
    lab = lab_factory(("smtp", "pop3"), users=USERS)
    instances: list[PostfixInstance] = []

    def start(**kw) -> PostfixInstance:
        mta = PostfixInstance(lab.port("smtp"), ca_file=tls_paths(lab.directory).ca_cert, **kw)
        instances.append(mta)
        mta.start()
        return mta

    yield lab, start
    for mta in instances:  # stopped even when the test failed
        mta.stop()


def test_postfix_relays_ascii_utf8_attachment_and_three_recipients_byte_for_byte(relay):
    lab, start = relay
    mta = start()
    ascii_msg = message("Do you like ketchup?", "bob@lab.test", "How about pickles?\n.a line with a dot\n", "ascii")
    utf8_msg = message("Prueba: canción, niño y pingüino", "bob@lab.test", "¿Qué tal?\n", "utf8").replace(
        b"From: Alice", "From: Alicia Muñoz".encode())
    big_msg = attachment_message(2 * 1024 * 1024)
    three_msg = message("Para los tres", "bob@lab.test, carol@lab.test, josé@lab.test", "Hola a todos\n", "three")
    mta.sendmail(ascii_msg, "alice@lab.test", ["bob@lab.test"])
    mta.sendmail(utf8_msg, "alice@lab.test", ["bob@lab.test"])  # raw UTF-8 headers, via sendmail
    mta.sendmail(big_msg, "alice@lab.test", ["bob@lab.test"])
    mta.sendmail(three_msg, "alice@lab.test", ["bob@lab.test", "carol@lab.test", "josé@lab.test"])
    mta.wait_log(lambda log: log.count("status=sent") >= 6)
    log = mta.log()
    assert "status=bounced" not in log and "status=deferred" not in log, log

    # bob over POP3 in UTF-8 mode (RFC 6856) gets all four, as sent
    bob = sorted(pop3_messages(lab, "bob", "bob", utf8=True), key=len)
    by_id = {re.search(rb"Message-ID: <(\w+)@", m).group(1): m for m in bob}
    assert sorted(by_id) == [b"ascii", b"attach", b"three", b"utf8"]
    for key, sent in ((b"ascii", ascii_msg), (b"utf8", utf8_msg), (b"attach", big_msg), (b"three", three_msg)):
        assert_relayed_as_sent(by_id[key], sent)
    assert len(by_id[b"attach"]) > 2 * 1024 * 1024
    assert b" with UTF8SMTP id " in by_id[b"utf8"]  # Postfix used SMTPUTF8 for the UTF-8 header (RFC 6531 §3.7.3)
    assert b" with ESMTP id " in by_id[b"ascii"]
    # carol (POP3) and josé (the store: a UTF-8 user name needs POP3's "UTF8 USER", not offered)
    [carol] = pop3_messages(lab, "carol", "carol", utf8=True)  # "To: ... josé@lab.test" is a UTF-8 header
    assert_relayed_as_sent(carol, three_msg)
    [jose] = stored(lab, "josé")
    assert_relayed_as_sent(jose, three_msg)
    assert "for <josé@lab.test>".encode() in jose

    # a POP3 client that did not send UTF8 is refused the UTF-8 message, with the RFC's code
    client = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=30)
    client.user("bob")
    client.pass_("bob")
    numbers = [n for n, m in enumerate(stored(lab, "bob"), 1) if b"<utf8@" in m]
    with pytest.raises(poplib.error_proto, match=r"\[UTF8\]"):
        client.retr(numbers[0])
    client.quit()

    # PIPELINING: Postfix sent MAIL, RCPT... and DATA as one group; no mistake noted anywhere
    assert notes(lab) == []
    smtp = [e for e in lab.events if e.protocol == "smtp" and e.kind is Kind.COMMAND]
    assert {e.verb for e in smtp} >= {"EHLO", "MAIL", "RCPT", "DATA", "QUIT"}
    assert any(b"SMTPUTF8" in e.raw for e in smtp if e.verb == "MAIL")


def test_unknown_recipient_gets_550_and_a_bounce_without_a_false_note(relay, capsys):
    lab, start = relay
    mta = start()
    sent = message("Para nadie", "nosuchuser@lab.test", "Hello?\n", "nobody")
    mta.sendmail(sent, "alice@lab.test", ["nosuchuser@lab.test"])
    # the refusal (550 5.1.1), then Postfix's bounce (a DSN from <>) relayed back to alice
    mta.wait_log(lambda log: "dsn=5.1.1, status=bounced" in log and "status=sent" in log)
    log = mta.log()
    assert "sender non-delivery notification" in log
    [bounce] = stored(lab, "alice")
    assert bounce.startswith(b"Return-Path: <>\r\n")
    assert b"Subject: Undelivered Mail Returned to Sender" in bounce
    assert b"550 5.1.1 No such user here: nosuchuser@lab.test" in bounce
    assert b"Message-ID: <nobody@mta.example>" in bounce  # the original comes back attached

    events = lab.wait_closed(2)
    refused = [e for e in events if e.session == events[0].session]  # the first session: the refusal
    codes = [(e.verb, e.code) for e in refused if e.kind is Kind.REPLY and e.raw[3:4] == b" "]
    assert ("RCPT", "550") in codes and ("DATA", "554") in codes
    # DATA pipelined with the refused RCPT (RFC 2920 §3.1) is what a correct MTA does
    assert notes(lab) == []
    with capsys.disabled():  # the transcript of the refused session, for the record
        print("\n" + render_text(refused))


def test_starttls_verified_against_the_lab_ca(relay):
    lab, start = relay
    mta = start(tls="secure")
    sent = message("Cifrado: ¿sí?", "bob@lab.test", "TLS\n", "tls")
    mta.sendmail(sent, "alice@lab.test", ["bob@lab.test"])
    mta.wait_log(lambda log: "status=sent" in log)
    assert "Verified TLS connection established to 127.0.0.1" in mta.log()
    [got] = stored(lab, "bob")
    assert_relayed_as_sent(got, sent)
    assert b" with UTF8SMTPS id " in got  # SMTPUTF8 after STARTTLS (RFC 6531 §4.3)
    assert any(e.kind is Kind.TLS for e in lab.events)
    assert notes(lab) == []


def test_secure_level_without_the_certificate_name_fails_on_the_ip_relayhost(relay):
    """Postfix's "secure" level matches the certificate against the next hop: for
    ``relayhost = [127.0.0.1]`` that is "127.0.0.1", not a name in the lab's certificate's
    DNS names, so the message stays queued until ``smtp_tls_secure_cert_match = lab.test``."""
    lab, start = relay
    mta = start(tls="secure-default")
    mta.sendmail(message("x", "bob@lab.test", "x\n", "mismatch"), "alice@lab.test", ["bob@lab.test"])
    mta.wait_log(lambda log: "status=deferred" in log)
    assert "Server certificate not verified" in mta.log() or "certificate verification failed" in mta.log()
    assert stored(lab, "bob") == []
    # the lab saw a client that greeted and left: its note points at the client's own log
    lab.wait_closed(1)
    assert "left-without-transaction" in [rule for _, _, rule in notes(lab)], render_text(lab.events)
