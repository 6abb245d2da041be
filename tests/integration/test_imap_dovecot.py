"""The same Maildir served by mailtrace and by Dovecot: FETCH and SEARCH answers agree.

Dovecot (Debian's dovecot-imapd) is the reference IMAP server students meet in practice; it
is started with a private configuration on a loopback port (the harness of
tests/bench/bench_pop3.py).  Answers are compared after folding case (RFC 3501 §4.3: MIME
type names are case-insensitive; Dovecot keeps the message's spelling, we send upper case)
and ignoring the order of the data items.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from test_imap_helpers import MULTI, SIMPLE
from test_imap_server import RunningServer

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("dovecot") is None or os.geteuid() != 0,
                                 reason="needs Dovecot (Debian: dovecot-imapd) and root to start it")]

MESSAGES = [
    SIMPLE, MULTI,
    b'From: "Last, First" <a@b.c>, x@y.z\r\nTo: undisclosed-recipients:;\r\nSubject: plain\r\nReply-To: r@s.t\r\n'
    b"Sender: s@t.u\r\nIn-Reply-To: <p@q>\r\n\r\nno type\r\n",
    b"Content-Type: multipart/alternative; boundary=b1\r\nSubject: alt\r\n\r\n--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\nplain\r\n--b1\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
    b"Content-Transfer-Encoding: base64\r\nContent-ID: <c1>\r\nContent-Description: html part\r\n\r\nPGI+aGk8L2I+\r\n"
    b"--b1--\r\n",
    b"Content-Type: multipart/mixed; boundary=\"o\"\r\nCc: team: a@b.c, d@e.f;, g@h.i\r\n\r\n--o\r\n"
    b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Language: en, fr\r\n"
    b"\r\nJVBERi0=\r\n--o\r\nContent-Type: image/png; name=\"a.png\"\r\nContent-Disposition: inline; filename=\"a.png\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--o--\r\n",
    b"Subject: no body",
    b"Content-Type: message/rfc822\r\n\r\nFrom: in@x.y\r\nSubject: wrapped\r\nContent-Type: multipart/mixed; boundary=z\r\n"
    b"\r\n--z\r\n\r\npart\r\n--z--\r\n",
]
ITEMS = ("(ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[TEXT] BODY.PEEK[2] "
         "BODY.PEEK[HEADER.FIELDS (Subject To)] BODY.PEEK[HEADER.FIELDS.NOT (Subject)] BODY.PEEK[]<5.20>)")
SEARCHES = [("TEXT", "plain"), ("BODY", "part"), ("HEADER", "Content-ID", '""'), ("FROM", "last"), ("CC", "team"),
            ("LARGER", "200"), ("OR", "SUBJECT", "alt", "SUBJECT", "wrapped"), ("NOT", "TO", "alice"), ("1:3,6",)]


def _items(fetch_response) -> dict[str, bytes]:
    """``(b'1 (A x B {3}', b'lit'), b')'`` ... -> {"A": b"x", "B": b"lit"}, case folded."""
    flat = b""
    for part in fetch_response:
        flat += part[0] + b"\0" + part[1] + b"\0" if isinstance(part, tuple) else part
    items = {}
    for m in re.finditer(rb"(ENVELOPE|BODYSTRUCTURE|BODY\[[^\]]*\](?:<\d+>)?|BODY|RFC822\.SIZE) "
                         rb"(\{\d+\}\0(.*?)\0|\((?:[^()\"]|\"(?:[^\"\\\\]|\\\\.)*\"|\((?:[^()\"]|\"[^\"]*\"|\([^()]*\))*\))*\)"
                         rb"|\d+)", flat, re.S):
        value = m.group(3) if m.group(3) is not None else m.group(2)
        items[m.group(1).decode().upper()] = value if m.group(3) is not None else value.lower()
    return items


def _answers(port: int, count: int) -> tuple[list[dict], list]:
    m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    m.login("bob", "bob")
    m.select("INBOX", readonly=True)
    fetched = []
    for n in range(1, count + 1):
        typ, data = m.fetch(str(n), ITEMS)
        assert typ == "OK", data
        fetched.append(_items([d for d in data if d != b")"] + [b")"]))
    found = [m.search(None, *keys) for keys in SEARCHES]
    m.logout()
    return fetched, found


@pytest.fixture
def shared_dir():
    """A directory the dovecot user can reach (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="imap-dovecot-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_fetch_and_search_agree_with_dovecot(shared_dir):
    from bench_pop3 import Dovecot, mail_owner

    tmp_path = shared_dir
    srv = RunningServer(tmp_path / "lab")
    try:
        for msg in MESSAGES:
            srv.store.deliver("bob", msg)
        uid, gid = mail_owner()
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(tmp_path / "lab" / "mail")], check=True)
        dovecot = Dovecot(tmp_path / "dovecot", tmp_path / "lab" / "mail", {"bob": "bob"}, protocols=("imap",)).start()
        try:
            ours = _answers(srv.port, len(MESSAGES))
            theirs = _answers(dovecot.ports["imap"], len(MESSAGES))
        finally:
            dovecot.stop()
    finally:
        srv.stop()
    for n, (a, b) in enumerate(zip(ours[0], theirs[0]), 1):
        assert a.keys() == b.keys(), n
        for key in a:
            assert a[key] == b[key], (n, key)
    assert ours[1] == theirs[1]
