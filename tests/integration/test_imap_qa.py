"""Regressions for the independent QA findings on the IMAP server (notes/qa_findings.md)."""

from __future__ import annotations

import imaplib
import shutil
import socket

from mailtrace.transcript.event import Kind


def _break_delivery(lab, user: str = "bob") -> None:
    """Make every Maildir delivery for ``user`` fail: tmp/ becomes a file (QA-20's set-up)."""
    tmp = lab.store.root / user / "tmp"
    shutil.rmtree(tmp)
    tmp.write_text("not a directory")


def test_append_store_error_is_a_tagged_no_and_the_session_goes_on(lab_factory):
    """QA-20: an OSError while writing the message answers NO [SERVERBUG] (RFC 5530 §3)."""
    lab = lab_factory(("imap",), tls=False)
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    m.login("bob", "bob")
    m.select("INBOX")  # the user's Maildir exists before it is broken
    _break_delivery(lab)
    typ, data = m.append("INBOX", None, None, b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "NO"
    assert data[0].startswith(b"[SERVERBUG]") and b"NotADirectoryError" in data[0]
    assert m.noop()[0] == "OK"  # the session goes on
    m.logout()
    events = lab.wait_closed()
    reply = [e for e in events if e.kind is Kind.REPLY and e.verb == "APPEND"]
    assert reply and b"NotADirectoryError" in reply[-1].raw


def test_append_raw_socket_store_error(lab_factory):
    """QA-20 as reported: LITERAL+ APPEND over a raw socket gets its tagged NO."""
    lab = lab_factory(("imap",), tls=False)
    with socket.create_connection(("127.0.0.1", lab.port("imap")), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGIN bob bob\r\n")
        assert f.readline().startswith(b"a OK")
        s.sendall(b"s SELECT INBOX\r\n")
        while not (line := f.readline()).startswith(b"s "):
            pass
        _break_delivery(lab)
        s.sendall(b"b APPEND INBOX {12+}\r\nSubject: x\r\n\r\nc NOOP\r\n")
        assert f.readline().startswith(b"b NO [SERVERBUG]")
        while not (line := f.readline()).startswith(b"c "):
            pass
        assert line.startswith(b"c OK")


def test_copy_move_create_store_errors_are_tagged_no(lab_factory):
    """QA-20: COPY, MOVE and CREATE on a broken Maildir answer NO and the session goes on."""
    lab = lab_factory(("imap",), tls=False)
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    m.login("bob", "bob")
    assert m.create("Work")[0] == "OK"
    assert m.append("Work", None, None, b"Subject: w\r\n\r\nw\r\n")[0] == "OK"
    m.select("Work")
    _break_delivery(lab)  # INBOX can no longer take messages
    for typ, data in (m.copy("1", "INBOX"), m._simple_command("MOVE", "1", "INBOX")):
        assert typ == "NO", data
    (lab.store.root / "bob" / ".New").write_text("in the way")  # CREATE New must fail on the file
    typ, data = m.create("New")
    assert typ == "NO"
    assert m.noop()[0] == "OK"
    m.logout()


def test_a_core_bug_is_said_on_stderr_and_in_the_close_reason(tmp_path, capsys):
    """servers/base.py: an unexpected exception costs one connection, is one stderr line and the close reason."""
    import asyncio

    from mailtrace.servers.base import Listener, ListenerConfig
    from mailtrace.transcript.recorder import MemorySink, Recorder

    class BuggyCore:  # a core with a bug: the shell must survive it and say what happened
        idle_timeout_seconds = 0

        def start(self):
            return []

        def receive(self, data):
            raise ZeroDivisionError("division by zero in the test core")

        def eof(self):
            return []

    async def scenario():
        sink = MemorySink()
        listener = Listener(ListenerConfig("imap"), lambda ctx: BuggyCore(), Recorder([sink]))
        await listener.start()
        for _ in range(2):  # the server keeps accepting after a core blew up
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"a NOOP\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        await listener.stop()
        return sink.events

    events = asyncio.run(scenario())
    closes = [e for e in events if e.kind is Kind.CLOSE]
    assert len(closes) == 2
    assert all("ZeroDivisionError: division by zero in the test core" in e.reason.text for e in closes)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "ZeroDivisionError" in ln]
    assert len(lines) == 2 and "Traceback" not in err


def _names(m) -> set[str]:
    typ, data = m.list()
    assert typ == "OK"
    return {line.decode().rsplit(" ", 1)[1].strip('"') for line in data}


def test_rename_of_a_noselect_parent_renames_its_inferiors(lab_factory):
    """QA-15: RFC 3501 §6.3.5 inferiors are renamed too, also under a \\Noselect parent (§6.3.4)."""
    lab = lab_factory(("imap",), tls=False)
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    m.login("alice", "alice")
    for name in ("P", "P.C1", "P.C2.D", "Taken"):
        assert m.create(name)[0] == "OK"
    assert m.append("P.C1", None, None, b"Subject: kept\r\n\r\nx\r\n")[0] == "OK"
    assert m.delete("P")[0] == "OK"
    typ, data = m.list('""', "P")
    assert b"\\Noselect" in data[0]
    assert m.rename("P", "Taken.P")[0] == "OK"  # under an existing mailbox
    names = _names(m)
    assert {"Taken.P.C1", "Taken.P.C2.D"} <= names and not any(n == "P" or n.startswith("P.") for n in names)
    assert m.select("Taken.P.C1") == ("OK", [b"1"])
    m.close()
    assert m.rename("Taken.P", "Q")[0] == "OK"
    assert {"Q.C1", "Q.C2.D"} <= _names(m)
    typ, data = m.rename("Nothing", "Z")  # still NONEXISTENT when there is nothing at all
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]
    assert m.create("R.C1")[0] == "OK" and m.delete("R")[0] in ("OK", "NO")
    typ, data = m.rename("Q", "R")  # R.C1 would be overwritten
    assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
    typ, data = m.rename("Q", "Q.Sub")  # into its own inferior
    assert typ == "NO"
    assert {"Q.C1", "Q.C2.D"} <= _names(m)
    m.logout()


def test_commands_pipelined_after_logout_are_flagged(lab_factory):
    """QA-17: "b NOOP" sent with "a LOGOUT" is not run and the transcript says so (RFC 3501 §6.1.3)."""
    lab = lab_factory(("imap",), tls=False)
    with socket.create_connection(("127.0.0.1", lab.port("imap")), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGOUT\r\nb NOOP\r\n")
        assert f.readline().startswith(b"* BYE")
        assert f.readline().startswith(b"a OK")
        assert f.read() == b""  # b NOOP never answered
    events = lab.wait_closed()
    (flag,) = [e for e in events if any(n.rule == "after-logout" for n in e.notes)]
    assert flag.kind is Kind.COMMAND and flag.raw == b"b NOOP\r\n" and flag.size == 8
    close = [e for e in events if e.kind is Kind.CLOSE][0]
    assert events.index(flag) < events.index(close)


def test_the_observer_flags_a_command_pipelined_after_logout():
    from mailtrace.protocols.imap import ImapObserver

    obs = ImapObserver()
    obs.feed_server(b"* OK ready\r\n")
    a, b = obs.feed_client(b"a LOGOUT\r\nb NOOP\r\n")
    assert not a.notes and [n.rule for n in b.notes] == ["after-logout"]
    obs.feed_server(b"* BYE bye\r\na OK LOGOUT completed\r\n")
    (late,) = obs.feed_client(b"c NOOP\r\n")
    assert [n.rule for n in late.notes] == ["after-logout"]


def test_imap_login_name_in_any_case(lab_factory):
    """QA-25: `--user Dave:pw` creates dave; LOGIN Dave and AUTHENTICATE PLAIN Dave log in as dave."""
    from mailtrace.cli.serve import parse_users

    lab = lab_factory(("imap",), tls=False, users=parse_users(("Dave:pw",)))
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    assert m.login("Dave", "pw")[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    assert m.authenticate("PLAIN", lambda _: b"\0DAVE\0pw")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", lab.port("imap"), timeout=10)
    try:
        m.login("Dave", "PW")
    except imaplib.IMAP4.error as exc:
        assert "AUTHENTICATIONFAILED" in str(exc)
    else:
        raise AssertionError("the password stays case-sensitive")
    m.logout()
