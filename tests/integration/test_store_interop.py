"""The store interoperates with real mail programs: Dovecot (both ways) and mutt.

Dovecot runs with a private configuration in a temporary directory (no listeners: only its
master and auth processes, which ``doveadm`` and ``dovecot-lda`` need for the user lookup).
Dovecot refuses to run mail processes as root, so its users are uid/gid 65534 (nobody) and
the test hands the Maildir tree to that uid before Dovecot touches it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mailtrace.store.maildir import MaildirStore

pytestmark = pytest.mark.slow

NOBODY = 65534
LDA = "/usr/lib/dovecot/dovecot-lda"


def chown_tree(path: Path, uid: int = NOBODY) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, uid)


class Dovecot:
    def __init__(self) -> None:
        # A short directory: Dovecot's UNIX sockets live there (108-octet limit), and one
        # that uid 65534 may traverse (pytest's tmp_path is private to root).
        self.dir = Path(tempfile.mkdtemp(prefix="dv-"))
        self.dir.chmod(0o755)
        self.mail_root = mail_root = self.dir / "mail"
        mail_root.mkdir()
        self.conf = self.dir / "dovecot.conf"
        home = self.dir / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        self.conf.write_text(f"""
protocols =
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
ssl = no
mail_location = maildir:{mail_root}/%u
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = static
  args = password=unused
}}
userdb {{
  driver = static
  args = uid={NOBODY} gid={NOBODY} home={home}/%u
}}
""")

    def start(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True, timeout=30)
        socket_path = self.dir / "run" / "auth-userdb"
        deadline = time.monotonic() + 15
        while not socket_path.exists():
            if time.monotonic() > deadline:
                pytest.fail("Dovecot did not start: " + self.log())
            time.sleep(0.05)

    def stop(self) -> None:
        pid_file = self.dir / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text())
        except (FileNotFoundError, ValueError):
            pid = None
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True, timeout=30)
        if pid is not None:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.dir / "dovecot.log").read_text()
        except FileNotFoundError:
            return "(no log)"

    def doveadm(self, *args: str, stdin: bytes | None = None) -> str:
        chown_tree(self.mail_root)
        out = subprocess.run(["doveadm", "-c", str(self.conf), *args], input=stdin,
                             capture_output=True, timeout=60)
        assert out.returncode == 0, (args, out.stderr.decode(), self.log())
        return out.stdout.decode()

    def doveadm_json(self, *args: str) -> list[dict]:
        return json.loads(self.doveadm("-f", "json", *args) or "[]")

    def lda(self, user: str, message: bytes) -> None:
        chown_tree(self.mail_root)
        out = subprocess.run([LDA, "-c", str(self.conf), "-d", user], input=message,
                             capture_output=True, timeout=60)
        assert out.returncode == 0, (out.stderr.decode(), self.log())


@pytest.fixture
def dovecot():
    if not (shutil.which("dovecot") and shutil.which("doveadm")):
        pytest.skip("Dovecot is not installed (Debian: dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("starting a private Dovecot whose users are uid 65534 needs root")
    server = Dovecot()
    server.start()
    yield server
    server.stop()


def test_dovecot_reads_what_mailtrace_wrote(dovecot: Dovecot) -> None:
    store = MaildirStore(dovecot.mail_root, {"alice": "pw"})
    msgs = [b"From: a@lab.test\r\nSubject: one\r\n\r\nfirst\r\n",
            b"From: b@lab.test\r\nSubject: two\r\n\r\n.dotted\r\n",
            b"From: c@lab.test\nSubject: lf\n\nbare LF line\n"]
    infos = [store.deliver("alice", m) for m in msgs]
    box = store.mailbox("alice")
    box.set_flags(infos[0].uid, ["\\Seen", "\\Answered", "Homework"])
    store.create_mailbox("alice", "Work.Sub")
    store.mailbox("alice", "Work.Sub").append(msgs[1], flags=["\\Flagged"])
    store.subscribe("alice", "Work.Sub")

    fetched = dovecot.doveadm_json("fetch", "-u", "alice", "uid flags size.virtual text",
                                   "mailbox", "INBOX", "all")
    assert [int(f["uid"]) for f in fetched] == [i.uid for i in infos]
    for f, info, raw in zip(fetched, infos, msgs):
        assert f["text"].encode() == raw.replace(b"\r\n", b"\n")  # as stored: LF line ends
        assert int(f["size.virtual"]) == info.size
    assert set(fetched[0]["flags"].split()) >= {"\\Seen", "\\Answered", "Homework"}
    status = dovecot.doveadm_json("mailbox", "status", "-u", "alice",
                                  "uidvalidity uidnext messages", "INBOX")[0]
    assert int(status["uidvalidity"]) == box.uidvalidity
    assert int(status["uidnext"]) == infos[-1].uid + 1
    assert int(status["messages"]) == 3
    sub = dovecot.doveadm_json("fetch", "-u", "alice", "uid flags", "mailbox", "Work.Sub", "all")
    assert [(s["uid"], "\\Flagged" in s["flags"]) for s in sub] == [("1", True)]
    names = {m["mailbox"] for m in dovecot.doveadm_json("mailbox", "list", "-u", "alice")}
    assert {"INBOX", "Work.Sub"} <= names
    subscribed = dovecot.doveadm_json("mailbox", "list", "-s", "-u", "alice")
    assert [m["mailbox"] for m in subscribed] == ["Work.Sub"]


def test_mailtrace_reads_what_dovecot_wrote(dovecot: Dovecot) -> None:
    MaildirStore(dovecot.mail_root, {"alice": "pw"})  # creates alice's Maildir
    dovecot.lda("alice", b"From: lda@lab.test\nSubject: via lda\n\nline 1\n.line 2\n")
    dovecot.doveadm("save", "-u", "alice", stdin=b"Subject: via save\n\nsaved\n")
    dovecot.doveadm("mailbox", "create", "-u", "alice", "Projects")
    dovecot.doveadm("save", "-u", "alice", "-m", "Projects", stdin=b"Subject: p\n\nproj\n")
    dovecot.doveadm("flags", "add", "-u", "alice", "\\Seen $Label1", "mailbox", "INBOX", "uid", "2")
    dovecot.doveadm("mailbox", "subscribe", "-u", "alice", "Projects")
    theirs = dovecot.doveadm_json("fetch", "-u", "alice", "uid", "mailbox", "INBOX", "all")

    store = MaildirStore(dovecot.mail_root, {"alice": "pw"})
    box = store.mailbox("alice")
    assert [m.uid for m in box.messages()] == [int(t["uid"]) for t in theirs] == [1, 2]
    assert box.read(1) == b"From: lda@lab.test\r\nSubject: via lda\r\n\r\nline 1\r\n.line 2\r\n"
    assert box.get(1).size == len(box.read(1))
    assert box.read(2) == b"Subject: via save\r\n\r\nsaved\r\n"
    assert box.get(2).flags == {"\\Seen", "$Label1"}
    assert box.uidvalidity == int(dovecot.doveadm_json(
        "mailbox", "status", "-u", "alice", "uidvalidity", "INBOX")[0]["uidvalidity"])
    assert store.list_mailboxes("alice") == ["INBOX", "Projects"]
    assert store.subscriptions("alice") == ["Projects"]
    assert store.mailbox("alice", "Projects").read(1) == b"Subject: p\r\n\r\nproj\r\n"

    # Both keep numbering the same Maildir together.
    info = store.deliver("alice", b"Subject: after\r\n\r\nx\r\n")
    assert info.uid == 3
    again = dovecot.doveadm_json("fetch", "-u", "alice", "uid text", "mailbox", "INBOX", "all")
    assert (again[-1]["uid"], again[-1]["text"]) == ("3", "Subject: after\n\nx\n")
    dovecot.lda("alice", b"Subject: last\n\nlast\n")
    box.refresh()
    assert [m.uid for m in box.messages()] == [1, 2, 3, 4]
    box.expunge([1])
    left = dovecot.doveadm_json("fetch", "-u", "alice", "uid", "mailbox", "INBOX", "all")
    assert [int(x["uid"]) for x in left] == [2, 3, 4]


class Terminal:
    """A program on a pseudo-terminal, driven like a user at the keyboard would."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, TERM="vt100", HOME=str(cwd), LC_ALL="C.UTF-8", MAIL="")
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True, cwd=cwd, start_new_session=True)
        os.close(slave)
        self.screen = b""

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return False
        self.screen += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.screen:
            if time.monotonic() > deadline or not self._read(0.1):
                pytest.fail(f"{text!r} never appeared: " +
                            self.screen.decode(errors="replace")[-400:])

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if not self._read(0.1):
                break
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def wait_for(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_mutt_opens_reads_and_flags_the_maildir(tmp_path: Path) -> None:
    if not shutil.which("mutt"):
        pytest.skip("mutt is not installed")
    store = MaildirStore(tmp_path / "mail", {"alice": "pw"})
    for n in range(3):
        store.deliver("alice", b"From: s@lab.test\r\nDate: Thu, 26 Nov 2026 10:0%d:00 +0000\r\n"
                               b"Subject: note %d\r\n\r\nbody %d\r\n" % (n, n, n))
    box = store.mailbox("alice")
    box.set_flags(1, ["\\Seen"])
    piped = tmp_path / "piped"
    mutt = Terminal(["mutt", "-n", "-F", "/dev/null", "-f", str(tmp_path / "mail" / "alice"),
                     "-e", f"set folder={tmp_path / 'mail'} pipe_split=yes wait_key=no "
                     "mark_old=no"],
                    tmp_path)
    try:
        mutt.expect("Msgs:3")
        assert b"New:2" in mutt.screen  # the \Seen one is not new
        mutt.type("T")  # tag-pattern
        mutt.expect("Tag messages matching:")
        mutt.type("~A\r\x0c")  # all messages; ^L redraws the whole screen
        mutt.expect("Tag:3")
        mutt.type(";|")  # pipe each tagged message to a command
        mutt.expect("Pipe to command:")
        mutt.type("cat >> piped\r")
        assert wait_for(lambda: piped.exists() and piped.read_text().count("Subject:") == 3)
        mutt.type(";F\x0c")  # flag the tagged messages
        mutt.expect("Flag:3")
        mutt.type("$q")  # write the changes back (rename the files), quit
    finally:
        mutt.finish()
    assert mutt.proc.returncode == 0
    text = piped.read_text()
    for n in range(3):
        assert f"Subject: note {n}\n" in text and f"body {n}\n" in text
    box.refresh()
    flags = {m.uid: m.flags for m in box.messages()}
    assert flags == {1: {"\\Seen", "\\Flagged"}, 2: {"\\Flagged"}, 3: {"\\Flagged"}}


def deliver_as_nobody(mail_root: Path, count: int) -> None:
    """Runs in a forked child: the same uid as Dovecot's mail processes, so each can read
    what the other writes."""
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    store = MaildirStore(mail_root, {"alice": "pw"}, fsync=False)
    for n in range(count):
        store.deliver("alice", b"Subject: mailtrace %d\r\n\r\nx\r\n" % n)


def test_dovecot_and_mailtrace_delivering_at_once_agree(dovecot: Dovecot) -> None:
    """Both programs add messages to one Maildir at the same time: every message gets one
    UID and both see the same numbering (the uidlist lock and Dovecot's dot-lock at work)."""
    MaildirStore(dovecot.mail_root, {"alice": "pw"}).mailbox("alice")
    chown_tree(dovecot.mail_root)
    ours = multiprocessing.get_context("fork").Process(
        target=deliver_as_nobody, args=(dovecot.mail_root, 30))
    ours.start()
    theirs = [subprocess.Popen(["doveadm", "-c", str(dovecot.conf), "save", "-u", "alice"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(15)]
    for n, proc in enumerate(theirs):
        proc.communicate(b"Subject: dovecot %d\n\ny\n" % n, timeout=60)
        assert proc.returncode == 0
    ours.join(120)
    assert ours.exitcode == 0

    fetched = dovecot.doveadm_json("fetch", "-u", "alice", "uid hdr.subject", "mailbox", "INBOX",
                                   "all")
    box = MaildirStore(dovecot.mail_root, {"alice": "pw"}).mailbox("alice")
    mine = {m.uid: box.read(m.uid).split(b"\r\n")[0].decode()[len("Subject: "):]
            for m in box.messages()}
    assert {int(f["uid"]): f["hdr.subject"].strip() for f in fetched} == mine
    assert sorted(mine) == list(range(1, 46))
    assert sorted(mine.values()) == sorted([f"mailtrace {n}" for n in range(30)] +
                                           [f"dovecot {n}" for n in range(15)])
