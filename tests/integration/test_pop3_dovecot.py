"""Dovecot's POP3 and mailtrace's POP3 serve one Maildir alike: same STAT, LIST, UIDL and RETR bytes.

Both read the same ``dovecot-uidlist`` (the store keeps Dovecot's format) and mailtrace uses
Dovecot's default ``pop3_uidl_format`` (``%08Xu%08Xv``), so a "leave mail on server" client can
switch between them without downloading everything again.  Dovecot runs with a private
configuration on a loopback port (the benchmark's harness, ``tests/bench/bench_pop3.py``).
"""

from __future__ import annotations

import importlib.util
import os
import poplib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_pop3_server import RunningServer

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("dovecot") or os.geteuid() != 0,
                                 reason="needs Dovecot (Debian: dovecot-pop3d) and root to start it")]

_spec = importlib.util.spec_from_file_location("bench_pop3", Path(__file__).parents[1] / "bench" / "bench_pop3.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PASSWORD = "alice-pw"
LF_MESSAGES = [  # as Dovecot's LDA writes them: LF line ends
    b"Subject: one\n\nplain body\n",
    b"Subject: two\n\n.a line starting with a dot\n..and two\n.\nend\n",
    b"Subject: three\n\nno final newline",
]


def session(port: int, user: str) -> dict:
    pop = poplib.POP3("127.0.0.1", port, timeout=10)
    pop.user(user)
    pop.pass_(PASSWORD)
    result = {"stat": pop.stat(), "list": pop.list()[1], "uidl": pop.uidl()[1],
              "retr": [pop.retr(n)[1] for n in range(1, pop.stat()[0] + 1)],
              "top": [pop.top(n, 1)[1] for n in range(1, pop.stat()[0] + 1)]}
    pop.quit()
    return result


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pop3-dovecot-"))
    d.chmod(0o755)  # Dovecot's auth process reads its passwd file in here
    yield d
    shutil.rmtree(d, ignore_errors=True)


def chown_mail(path: Path) -> None:
    uid, gid = bench.mail_owner()
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True)


def test_same_answers_from_dovecot_and_mailtrace(workdir):
    mail = workdir / "lab" / "mail"
    cur = mail / "alice" / "cur"
    for sub in ("cur", "new", "tmp"):
        (mail / "alice" / sub).mkdir(parents=True)
    for n, data in enumerate(LF_MESSAGES, 1):
        (cur / f"17000000{n:02}.M{n}P1.dovecot:2,").write_bytes(data)
    chown_mail(mail)
    users = {"alice": PASSWORD, "bob": PASSWORD}
    dovecot = bench.Dovecot(workdir / "dovecot", mail, users).start()
    ours = RunningServer(workdir / "lab", users=users)
    try:
        # 1. a Maildir Dovecot wrote (and indexed first): mailtrace answers the same
        theirs_first = session(dovecot.ports["pop3"], "alice")
        assert session(ours.port, "alice") == theirs_first
        assert theirs_first["retr"][1][:3] == [b"Subject: two", b"", b".a line starting with a dot"]
        # 2. a Maildir mailtrace wrote (SMTP-style CRLF delivery, mailtrace assigns the UIDs)
        ours.store.deliver("bob", b"Subject: from mailtrace\r\n\r\n.dot\r\nbye\r\n")
        ours.store.deliver("bob", b"Subject: second\r\n\r\nhi\r\n")
        mine = session(ours.port, "bob")
        chown_mail(mail)  # the lab runs as root; Dovecot's mail processes run as "mail"
        assert session(dovecot.ports["pop3"], "bob") == mine
    finally:
        ours.stop()
        dovecot.stop()
