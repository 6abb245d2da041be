"""Regressions for the independent QA findings on POP3 (notes/qa_findings.md)."""

from __future__ import annotations

from mailtrace.protocols.pop3 import Pop3Observer
from mailtrace.transcript.event import Kind, Side


def rules(events):
    return [n.rule for e in events for n in e.notes]


def test_commands_pipelined_after_pass_are_judged_when_the_server_reaches_them():
    """QA-24: STAT/LIST pipelined after PASS are right when PASS succeeds (RFC 2449 §6.6)."""
    obs = Pop3Observer()
    events = obs.feed_server(b"+OK ready\r\n")
    events += obs.feed_client(b"USER a\r\nPASS b\r\nSTAT\r\nLIST 1\r\nUIDL\r\nRETR 1\r\n")
    events += obs.feed_server(b"+OK\r\n+OK logged in\r\n+OK 1 10\r\n+OK 1 10\r\n+OK\r\n1 u1\r\n.\r\n")
    events += obs.feed_server(b"+OK 10 octets\r\nSubject: x\r\n.\r\n")
    assert rules(events) == []
    assert [e.verb for e in events if e.side is Side.SERVER] == ["", "USER", "PASS", "STAT", "LIST", "UIDL", "UIDL",
                                                               "RETR", "RETR"]


def test_pipelined_commands_after_a_failed_pass_are_in_the_wrong_state():
    """QA-24: if PASS fails, the pipelined STAT ran in AUTHORIZATION: flagged once its turn comes."""
    obs = Pop3Observer()
    obs.feed_server(b"+OK ready\r\n")
    sent = obs.feed_client(b"USER a\r\nPASS wrong\r\nSTAT\r\nNOOP\r\n")
    assert rules(sent) == []  # not judged yet: the server has not reached them
    events = obs.feed_server(b"+OK\r\n-ERR [AUTH] no\r\n")
    (violation,) = [e for e in events if e.kind is Kind.VIOLATION]
    assert violation.verb == "STAT" and violation.side is Side.CLIENT and violation.state == "AUTHORIZATION"
    assert rules([violation]) == ["wrong-state"]
    assert events[-1] is violation  # right after the -ERR to PASS, before STAT's own reply
    events = obs.feed_server(b"-ERR not logged in\r\n")
    assert rules(events) == ["wrong-state"] and events[-1].verb == "NOOP"


def test_a_violation_waits_for_the_end_of_a_multiline_response():
    obs = Pop3Observer()
    obs.feed_server(b"+OK ready\r\n")
    obs.feed_client(b"CAPA\r\nSTAT\r\n")
    events = obs.feed_server(b"+OK\r\nUSER\r\n.\r\n")
    assert [e.kind for e in events] == [Kind.REPLY, Kind.DATA, Kind.VIOLATION]


def test_commands_pipelined_after_quit_are_flagged():
    obs = Pop3Observer()
    obs.feed_server(b"+OK ready\r\n")
    obs.feed_client(b"QUIT\r\nNOOP\r\n")
    events = obs.feed_server(b"+OK bye\r\n")
    assert rules(events) == ["after-quit"] and events[-1].verb == "NOOP"


def test_the_tracer_sees_no_violation_in_a_pipelined_login():
    """QA-24 as reported: the proxy's Tracer on the minimal reproduction."""
    from mailtrace.proxy.trace import Tracer
    from mailtrace.transcript.recorder import MemorySink, Recorder

    mem = MemorySink()
    tracer = Tracer(Recorder([mem]).session("pop3", mode="proxy"), "pop3")
    tracer.feed(Side.SERVER, b"+OK ready\r\n")
    tracer.feed(Side.CLIENT, b"USER a\r\nPASS b\r\nSTAT\r\nLIST 1\r\n")
    tracer.feed(Side.SERVER, b"+OK\r\n+OK logged in\r\n+OK 1 10\r\n+OK 1 10\r\n")
    assert rules(mem.events) == []


def test_pipelined_script_has_the_same_violations_as_the_core():
    """The whole SCRIPT pipelined at once: the observer flags exactly what the core flags."""
    from test_pop3_observer import SCRIPT, interleave, record_session

    for script in (SCRIPT, [b"USER alice\r\n", b"PASS wrong\r\n", b"STAT\r\n", b"QUIT\r\n"]):
        _, server, core_events = record_session(script)
        seen = interleave(Pop3Observer(), script, server, 7)
        core_rules = sorted(rules(e for e in core_events if e.side is Side.CLIENT))
        seen_rules = sorted(rules(e for e in seen if e.side is Side.CLIENT and e.kind is not Kind.VIOLATION
                                  or e.kind is Kind.VIOLATION and e.notes[0].rule != "no-quit"))
        assert seen_rules == core_rules


def _deliver_three(lab):
    for i in range(3):
        lab.store.deliver("bob", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())


def test_quit_is_ok_when_a_deleted_message_was_already_removed(lab_factory):
    """QA-21: DELE'd messages another program removed meanwhile are removed: QUIT says +OK (RFC 1939 §6)."""
    import poplib

    lab = lab_factory(("pop3",), tls=False)
    _deliver_three(lab)
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    p.user("bob")
    p.pass_("bob")
    assert p.stat()[0] == 3
    for sub in ("cur", "new"):  # everything vanishes behind the session's back
        for f in (lab.store.root / "bob" / sub).iterdir():
            f.unlink()
    try:
        p.retr(1)
    except poplib.error_proto as exc:
        assert b"[SYS/TEMP]" in exc.args[0]
    assert p.dele(1).startswith(b"+OK")
    assert p.dele(2).startswith(b"+OK")
    reply = p.quit()
    assert reply.startswith(b"+OK") and b"2 of the deleted were already removed" in reply
    assert b"(0 messages left" in reply  # message 3 vanished as well: the count is the maildrop's own


def test_quit_still_removes_what_is_there_and_reports_ok(lab_factory):
    import poplib

    lab = lab_factory(("pop3",), tls=False)
    _deliver_three(lab)
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    p.user("bob")
    p.pass_("bob")
    p.dele(1)
    reply = p.quit()
    assert reply.startswith(b"+OK") and b"already removed" not in reply
    assert len(lab.store.mailbox("bob").messages()) == 2


def test_quit_is_err_sys_temp_when_a_message_cannot_be_removed(lab_factory):
    """The -ERR of RFC 1939 §6 stays for a real failure: here the message file became a directory."""
    import poplib

    lab = lab_factory(("pop3",), tls=False)
    _deliver_three(lab)
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    p.user("bob")
    p.pass_("bob")
    p.dele(1)
    p.dele(2)
    for sub in ("cur", "new"):  # unlink() of a directory fails (EISDIR), even for root
        for f in sorted((lab.store.root / "bob" / sub).iterdir()):
            f.unlink()
            f.mkdir()
    try:
        p.quit()
    except poplib.error_proto as exc:
        assert exc.args[0].startswith(b"-ERR [SYS/TEMP] some deleted messages not removed")
    else:
        raise AssertionError("QUIT should have failed")


def test_user_names_given_twice_are_a_cli_error():
    """QA-25: a duplicate --user (in any case) is a clear error, never a silent override."""
    import click
    import pytest

    from mailtrace.cli.serve import parse_users

    assert parse_users(("Dave:pw", "bob:b")) == {"dave": "pw", "bob": "b"}
    for dup in (("alice:x", "alice:y"), ("ALICE:x", "alice:y")):
        with pytest.raises(click.BadParameter, match="given twice"):
            parse_users(dup)


def test_the_cli_refuses_a_duplicate_user(tmp_path):
    from click.testing import CliRunner

    from mailtrace.cli.serve import command

    result = CliRunner().invoke(command, ["pop3", "--port", "0", "--dir", str(tmp_path / "lab"),
                                          "--user", "alice:x", "--user", "Alice:y"])
    assert result.exit_code == 2 and "given twice" in result.output and "Traceback" not in result.output


def test_pop3_login_name_in_any_case(lab_factory):
    """QA-25: `--user Dave:pw` creates dave; USER Dave / APOP Dave log in as dave."""
    import hashlib
    import poplib
    import re

    from mailtrace.cli.serve import parse_users

    lab = lab_factory(("pop3",), tls=False, users=parse_users(("Dave:pw",)))
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    p.user("Dave")
    assert p.pass_("pw").startswith(b"+OK")
    assert p.quit().startswith(b"+OK")
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    stamp = re.search(rb"<[^>]+>", p.getwelcome()).group(0)
    digest = hashlib.md5(stamp + b"pw").hexdigest()
    assert p._shortcmd(f"APOP DAVE {digest}").startswith(b"+OK")
    p.quit()
    p = poplib.POP3("127.0.0.1", lab.port("pop3"), timeout=10)
    p.user("Dave")
    try:
        p.pass_("PW")  # the password stays case-sensitive
    except poplib.error_proto as exc:
        assert exc.args[0].startswith(b"-ERR [AUTH]")
    else:
        raise AssertionError("a wrong password must fail")
    p.quit()
