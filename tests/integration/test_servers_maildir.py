"""The Maildir as mail tools expect it (issue #11): LF line ends on disk with ",S="/",W=" in
the names, byte-exact CRLF on the wire, the blank line after trace headers for a message
typed without a header section, stale tmp/ files cleaned at start; and mutt shows no ^M."""

from __future__ import annotations

import email
import imaplib
import os
import poplib
import shlex
import shutil
import signal
import smtplib
import subprocess
import time

import pytest

from mailtrace.protocols.smtp.trace import HeaderBreak, with_header_break
from mailtrace.store.maildir import MaildirStore

MSG = b"From: carol@lab.test\r\nSubject: lf test\r\nTo: bob@lab.test\r\n\r\nHola, line one.\r\nline two.\r\n"


def test_stored_with_lf_served_with_crlf_byte_exact(lab_factory):
    lab = lab_factory(("smtp", "pop3", "imap"), tls=False)
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("carol@lab.test", ["bob@lab.test"], MSG)
    (name,) = os.listdir(lab.store.root / "bob" / "new")
    on_disk = (lab.store.root / "bob" / "new" / name).read_bytes()
    assert b"\r" not in on_disk and on_disk.endswith(MSG.replace(b"\r\n", b"\n"))
    wire = on_disk.replace(b"\n", b"\r\n")
    assert name.endswith(f",S={len(on_disk)},W={len(wire)}")
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    pop.user("bob")
    pop.pass_("bob")
    assert pop.list()[1] == [f"1 {len(wire)}".encode()]  # LIST: the wire size (RFC 1939 §5)
    assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == wire
    assert pop.top(1, 0)[1][-1] == b""  # TOP: the header section and its blank line
    pop.quit()
    with imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10) as imap:
        imap.login("bob", "bob")
        imap.select("INBOX")
        typ, data = imap.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
        assert f"RFC822.SIZE {len(wire)}".encode() in data[0][0]
        assert data[0][1] == wire


def test_a_message_without_header_section_gets_the_blank_line(lab_factory):
    """The lecture's own DATA typed by hand: no header, just "Hola..." (as Postfix does it)."""
    lab = lab_factory(("smtp", "pop3", "imap"), tls=False)
    body = b"Hola Bob,\r\nthis is the body: line two.\r\n"
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("carol@lab.test", ["bob@lab.test"], body)
    with imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10) as imap:
        imap.login("bob", "bob")
        imap.select("INBOX")
        assert imap.fetch("1", "(BODY.PEEK[TEXT])")[1][0][1] == body  # intact, not taken for a header
        header = imap.fetch("1", "(BODY.PEEK[HEADER])")[1][0][1]
        assert header.startswith(b"Return-Path: <carol@lab.test>\r\nReceived: ") and header.endswith(b"\r\n\r\n")
        assert b"Hola" not in header
    pop = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    pop.user("bob")
    pop.pass_("bob")
    lines = pop.retr(1)[1]
    parsed = email.message_from_bytes(b"\r\n".join(lines))
    # poplib drops the last line end
    assert parsed.get_payload().replace("\r\n", "\n") == body.decode().replace("\r\n", "\n").rstrip("\n")
    assert parsed.defects == []
    pop.quit()


@pytest.mark.parametrize("content, expected", [
    (b"Hola\r\n", b"\r\nHola\r\n"),  # no header section at all
    (b"Subject: x\r\nHola\r\n", b"Subject: x\r\n\r\nHola\r\n"),  # header, then a body line at once
    (b"Subject: x\r\n folded\r\nTo: y\r\n\r\nbody\r\n", b"Subject: x\r\n folded\r\nTo: y\r\n\r\nbody\r\n"),
    (b"\r\nbody\r\n", b"\r\nbody\r\n"),  # an empty header section, already separated
    (b"From nobody\r\n", b"\r\nFrom nobody\r\n"),  # not a header field (a space before any colon)
    (b"Subject: only\r\n", b"Subject: only\r\n"),  # only a header section: nothing to add
])
def test_with_header_break(content, expected):
    assert with_header_break(content) == expected


def test_stale_tmp_files_are_removed_at_start(tmp_path):
    root = tmp_path / "mail"
    MaildirStore(root, {"alice": "a"}).close()
    (root / "alice" / ".Work" / "tmp").mkdir(parents=True)
    for d in ("cur", "new"):
        (root / "alice" / ".Work" / d).mkdir()
    old = time.time() - 37 * 3600
    stale = [root / "alice" / "tmp" / "1.M1P1.host,S=3", root / "alice" / ".Work" / "tmp" / "2.M2P2.host"]
    fresh = root / "alice" / "tmp" / "3.M3P3.host"
    for path in (*stale, fresh):
        path.write_bytes(b"half a message")
    for path in stale:
        os.utime(path, (old, old))
    store = MaildirStore(root, {"alice": "a"})  # a restart after kill -9
    try:
        assert [p.exists() for p in stale] == [False, False]
        assert fresh.exists()  # maybe a delivery in progress in another program: kept
    finally:
        store.close()


@pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("script") is None,
                    reason="mutt (and script, for its terminal) is not installed (apt-get install mutt)")
def test_mutt_shows_no_carriage_returns(lab_factory, tmp_path):
    lab = lab_factory(("smtp",), tls=False)
    with smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("carol@lab.test", ["bob@lab.test"], MSG)
    shown = tmp_path / "shown.txt"
    maildir = lab.store.root / "bob"
    rc = tmp_path / "muttrc"
    # the external pager gets the message as mutt displays it; cat -v shows a CR as ^M
    rc.write_text(f'set folder="{lab.store.root}"\nset spoolfile="{maildir}"\nset mbox_type=Maildir\n'
                  f'set wait_key=no\nset quit=yes\nset sleep_time=0\nset header_cache=""\nset weed=no\n'
                  f'set prompt_after=no\nset pager="cat -v > {shown}"\n')
    script = tmp_path / "mutt.sh"
    script.write_text(shlex.join(["mutt", "-n", "-F", str(rc), "-R", "-f", str(maildir),
                                  "-e", "push <display-message><exit><quit>"]) + "\n")
    proc = subprocess.Popen(["script", "-qec", f"sh {script}", "/dev/null"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TERM="xterm", HOME=str(tmp_path)), start_new_session=True)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("mutt did not finish")
    text = shown.read_text()
    assert "Subject: lf test" in text and "Hola, line one." in text
    assert "^M" not in text


@pytest.mark.parametrize("content", [
    b"Hola\r\n", b"Subject: x\r\nHola\r\n", b"Subject: x\r\n folded\r\nTo: y\r\n\r\nbody\r\n", b"Subject: x",
    b"Hola", b" x\r\n", b"Subject: x\r\n\r", b"S: x\r\n" + b"A" * 2000 + b"\r\n", b"A" * 2000 + b": x\r\nb\r\n",
])
def test_header_break_in_pieces_is_the_same_as_at_once(content):
    """A spooled message gets its empty line as a message held in memory, wherever it is cut."""
    for size in (1, 2, 3, 7):
        breaker = HeaderBreak()
        pieces = b"".join(breaker.feed(content[i:i + size]) for i in range(0, len(content), size))
        assert pieces + breaker.end() == with_header_break(content)
