"""Typed events and the JSONL format version 2 (issue #10): the facts an event carries are typed
fields; version-2 files write them as JSON values; version-1 files (``info`` strings) still read.

``golden/transcript-v1.jsonl`` was written once by mailtrace before the typed events (the version-1
writer): a lab SMTP session from the real core (EHLO keywords, AUTH, pipelined MAIL/RCPT, a
missing-brackets RCPT, DATA with its delivered message), a proxied IMAP session (TLS intercepted,
an APPEND literal spooled, a continued line) and a captured POP3 session (gaps, a graded run's
arrival marks, an unsolicited scripted line, an incomplete body).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailtrace.protocols.smtp import SmtpConfig, SmtpServerConnection
from mailtrace.protocols.smtp.observer import SmtpObserver
from mailtrace.store.maildir import MaildirStore
from mailtrace.transcript.event import (Args, Clause, Event, Kind, MessageRef, Peer, Reason, Side, Tls,
                                        facts_from_info)
from mailtrace.transcript.jsonl import VERSION, JsonlSink, read_jsonl
from mailtrace.transcript.links import Action
from mailtrace.transcript.recorder import MemorySink, Recorder, SessionRecorder

V1 = Path(__file__).parents[1] / "golden" / "transcript-v1.jsonl"
BOOLEAN_KEYS = {"continued", "spooled", "pipelined", "scripted", "unsolicited"}


def _v1_lines() -> list[dict]:
    return [json.loads(line) for line in V1.read_text(encoding="utf-8").splitlines()[1:]]


def _by(events, session: str, seq: int) -> Event:
    return next(e for e in events if e.session == session and e.seq == seq)


def test_version_1_file_reads_into_typed_facts():
    events = list(read_jsonl(V1))
    assert json.loads(V1.read_text().splitlines()[0])["version"] == 1 and len(events) == len(_v1_lines())
    assert _by(events, "smtp-1", 0).peer == Peer(client="127.0.0.1:40000", server="127.0.0.1:2525", mode="lab",
                                                 started=1700000000.25)
    assert [e.response_code for e in events if e.session == "smtp-1" and e.verb == "EHLO" and e.kind is Kind.REPLY] \
        == ["", "PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "HELP", "AUTH"]
    assert _by(events, "smtp-1", 12).user == "bob" and _by(events, "smtp-1", 15).pipelined
    delivered = _by(events, "smtp-1", 22).messages
    assert len(delivered) == 1 and delivered[0].action is Action.DELIVERED
    assert (delivered[0].user, delivered[0].mailbox, delivered[0].uid) == ("bob", "INBOX", 1)
    assert _by(events, "smtp-1", 25).reason == Reason(text="client sent QUIT", clauses=(Clause("client-quit"),))
    tls = _by(events, "imap-2", 4)
    assert tls.tls == Tls(how="starttls", intercepted=True, mark="tls-intercepted",
                          detail="TLS intercepted: the proxy decrypts")
    literal = _by(events, "imap-2", 6)
    assert literal.command == "APPEND" and literal.spooled
    assert _by(events, "imap-2", 7).response_code == "APPENDUID" and _by(events, "imap-2", 8).continued
    assert _by(events, "imap-2", 9).reason == Reason(text="upstream closed")
    assert _by(events, "pop3-3", 1).reason.clauses == (Clause("capture-started-late"),)
    assert _by(events, "pop3-3", 2).missing == 6
    user = _by(events, "pop3-3", 3)
    assert (user.arrived, user.partial) == ("mid-line", "+OK POP3 re")
    assert _by(events, "pop3-3", 4).unsolicited and _by(events, "pop3-3", 4).scripted
    data = _by(events, "pop3-3", 6)
    assert data.incomplete.startswith("the connection ended") and data.pipelined


def test_version_1_every_info_key_of_the_file_is_read():
    """Each line's version-1 info keys all become typed facts (the reader drops none of them)."""
    for line, event in zip(_v1_lines(), read_jsonl(V1)):
        facts = facts_from_info(line.get("info", {}))
        assert bool(facts) == bool(line.get("info")), line
        for name, value in facts.items():
            assert getattr(event, name) == value, (name, line)
        for key in BOOLEAN_KEYS & set(line.get("info", {})):
            assert getattr(event, key) is True, (key, line)


def _show(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailtrace", "show", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_show_reads_version_1_and_converts_it_to_version_2(tmp_path):
    text = _show(str(V1), "--lang", "es", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "127.0.0.1:40000" in text.stdout and "el cliente envió QUIT" in text.stdout
    page = tmp_path / "v1.html"
    html = _show(str(V1), "--format", "html", "-o", str(page), cwd=tmp_path)
    assert html.returncode == 0, html.stderr
    assert "[::1]:40001" in page.read_text() and "client sent QUIT" in page.read_text()
    out = tmp_path / "v2.jsonl"
    conv = _show(str(V1), "--format", "jsonl", "-o", str(out), cwd=tmp_path)
    assert conv.returncode == 0, conv.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["version"] == VERSION == 2 and not any("info" in line for line in lines)
    assert lines[1]["peer"]["started"] == 1700000000.25  # a number now, not "1700000000.250000"
    assert list(read_jsonl(out)) == list(read_jsonl(V1))
    pcap = tmp_path / "v1.pcap"
    assert _show(str(V1), "--format", "pcap", "-o", str(pcap), cwd=tmp_path).returncode == 0
    assert pcap.stat().st_size > 0


class _Ticks:
    """A clock that moves 1/64 s per call: exact in binary and in the file's six decimals."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> float:
        self.n += 1
        return self.n / 64


def _lab_smtp_session(rec: Recorder, store: MaildirStore) -> None:
    from mailtrace.protocols.base import Close, Pending

    conn = SmtpServerConnection(SmtpConfig(), store, clock=time.time, client_address="127.0.0.1:40000")
    session = SessionRecorder(rec, "smtp-1", "smtp", client="127.0.0.1:40000", server="127.0.0.1:2525",
                              started=1700000000.5, clock=_Ticks())

    def run(outputs) -> None:
        for out in outputs:
            if isinstance(out, Pending):
                run(out.resume(out.job()))
            elif isinstance(out, Event):
                session.record(out)
            elif isinstance(out, Close):
                session.close(Side.SERVER, out.reason)

    run(conn.start())
    for data in (b"EHLO crepes.fr\r\n", b"AUTH PLAIN AGJvYgBwdw==\r\n",
                 b"MAIL FROM:<> SIZE=20\r\nRCPT TO:<bob@lab.test>\r\nRCPT TO:carol@lab.test\r\n",
                 b"DATA\r\n", b"Subject: hi\r\n\r\n..dot\r\n.\r\n", b"QUIT\r\n"):
        run(conn.receive(data))


def test_version_2_golden_round_trip(tmp_path):
    """A session written to version 2 reads back as the very same events (secrets as saved)."""
    store = MaildirStore(tmp_path / "mail", {"bob": "pw"}, fsync=False)
    path = tmp_path / "t.jsonl"
    mem = MemorySink()
    rec = Recorder([JsonlSink(path), mem])
    _lab_smtp_session(rec, store)
    more = SessionRecorder(rec, "imap-2", "imap", client="[::1]:1", server="[::1]:143", mode="proxy",
                           started=1700000001.0, clock=_Ticks())
    more.record(Event(side=Side.NONE, kind=Kind.TLS, tls=Tls(how="starttls", intercepted=False, mark="tls-relayed")))
    more.record(Event(side=Side.CLIENT, kind=Kind.GAP, missing=12, reason=Reason(text="lost")))
    more.record(Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"a SELECT \xff\r\n", verb="SELECT",
                      args=Args(mailbox="INBOX", sequence_set="1:*", message=3, lines=0), arrived="mid-reply"))
    more.record(Event(side=Side.SERVER, kind=Kind.REPLY, raw=b"a OK\r\n", code="OK", continued=True, scripted=True,
                      messages=(MessageRef(Action.MOVED, "bob", "Drafts", 9),), unsolicited=True))
    more.close(Side.SERVER, {"reason": "idle", "why": json.dumps([["autologout", {"seconds": "30"}]])})
    rec.close()

    saved = list(read_jsonl(path))
    # a secret is saved in its redacted form, which is then what the file shows
    expected = [dataclasses.replace(e, raw=e.shown(), redacted=None) for e in mem.events]
    assert saved == expected
    mail = next(e for e in saved if e.verb == "MAIL" and e.kind is Kind.COMMAND)
    rcpts = [e for e in saved if e.verb == "RCPT" and e.kind is Kind.COMMAND]
    assert mail.args == Args(reverse_path="", params=(("SIZE", "20"),))
    assert [r.args.forward_path for r in rcpts] == ["bob@lab.test", "carol@lab.test"]
    assert any(e.user == "bob" for e in saved) and any(e.messages for e in saved if e.verb == "DATA")
    raw_lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert raw_lines[0]["version"] == 2
    assert {"reverse_path": "", "params": [["SIZE", "20"]]} in [line.get("args") for line in raw_lines]
    assert not any("info" in line for line in raw_lines)
    assert all("AGJvYgBwdw" not in line.get("raw", "") for line in raw_lines)


def test_core_and_observer_record_the_same_typed_envelope(tmp_path):
    """MAIL/RCPT arguments come from the one parser (smtp.syntax.parse_path) on both sides."""
    from mailtrace.protocols.base import Pending, Send

    store = MaildirStore(tmp_path / "mail", {"bob": "pw"}, fsync=False)
    core = SmtpServerConnection(SmtpConfig(), store, clock=time.time, client_address="127.0.0.1:4000")
    obs = SmtpObserver()
    core_events: list[Event] = []
    observed: list[Event] = []

    def run(outputs) -> None:
        for out in outputs:
            if isinstance(out, Pending):
                run(out.resume(out.job()))
            elif isinstance(out, Send):
                observed.extend(obs.feed_server(out.data))
            elif isinstance(out, Event):
                core_events.append(out)

    run(core.start())
    for line in (b"EHLO x\r\n", b"MAIL FROM:<a@b.test> BODY=8BITMIME\r\n", b"RCPT TO: <bob@lab.test>\r\n",
                 b"RCPT TO:bob@lab.test\r\n", b"RCPT TO:<not an address>\r\n", b"QUIT\r\n"):
        observed.extend(obs.feed_client(line))
        run(core.receive(line))
    store.close()

    def envelope(events):
        return [(e.verb, e.args) for e in events if e.kind is Kind.COMMAND and e.verb in ("MAIL", "RCPT")]

    assert envelope(core_events) == envelope(observed) == [
        ("MAIL", Args(reverse_path="a@b.test", params=(("BODY", "8BITMIME"),))),
        ("RCPT", Args(forward_path="bob@lab.test")), ("RCPT", Args(forward_path="bob@lab.test")),
        ("RCPT", None)]  # no path the parser can read: the 501 says so, the event has no args


def test_info_is_no_longer_an_event_argument_and_the_reader_drops_unknown_keys():
    with pytest.raises(TypeError, match="info"):
        Event(side=Side.SERVER, kind=Kind.REPLY, info={"code": "IN-USE"})  # the typed fields replaced it
    assert not hasattr(Event(side=Side.SERVER, kind=Kind.REPLY), "info")
    event = Event(side=Side.SERVER, kind=Kind.REPLY, response_code="IN-USE", user="bob", continued=True)
    moved = dataclasses.replace(event, user="alice")  # a copy keeps its facts and takes the new one
    assert (moved.response_code, moved.user, moved.continued) == ("IN-USE", "alice", True)
    assert facts_from_info({"colde": "x", "octets": "4"}) == {"missing": 4}  # a file reader drops it


def test_html_sink_writes_the_page_in_the_readers_language(tmp_path):
    """HTML export is a sink like JSONL and text; its words are knowledge data in both languages."""
    from mailtrace import knowledge
    from mailtrace.transcript.html import UI_KEYS, HtmlSink

    for key in UI_KEYS:
        entry = knowledge.lookup("common", "view", key)
        assert entry is not None and entry.texts.get("en", {}).get("meaning") and \
            entry.texts.get("es", {}).get("meaning"), key
    page = tmp_path / "t.html"
    sink = HtmlSink(page, lang="es", title="prueba")
    store = MaildirStore(tmp_path / "mail", {"bob": "pw"}, fsync=False)
    _lab_smtp_session(Recorder([sink]), store)
    assert not page.read_text()  # a ladder needs whole sessions: the page is written when closed
    sink.close()
    sink.close()  # closing twice writes nothing more
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("</html>") == 1
    assert knowledge.phrase("view", "session", "es") in text and "127.0.0.1:40000" in text
    assert "AGJvYgBwdw" not in text  # the AUTH PLAIN payload stays hidden


def test_a_damaged_version_2_line_is_a_clear_error(tmp_path):
    from mailtrace.transcript.jsonl import TranscriptFormatError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "mailtrace-transcript", "version": 2}\n'
                   '{"session": "s", "side": "-", "kind": "close", "reason": "not an object"}\n')
    with pytest.raises(TranscriptFormatError, match="bad.jsonl:2: bad event line"):
        list(read_jsonl(bad))
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"format": "mailtrace-transcript", "version": 3}\n')
    with pytest.raises(TranscriptFormatError, match="version 3 is newer"):
        list(read_jsonl(newer))


def test_a_version_1_start_time_that_is_no_number_reads_as_unknown(tmp_path):
    """Version-1 readers took an unreadable "started" as 0 (e.g. a golden file normalised to "STARTED")."""
    path = tmp_path / "v1.jsonl"
    path.write_text('{"format": "mailtrace-transcript", "version": 1}\n'
                    '{"session": "s", "side": "-", "kind": "open", "info": {"client": "a", "started": "STARTED"}}\n'
                    '{"session": "s", "side": "C", "kind": "gap", "info": {"octets": "many"}}\n')
    opened, gap = read_jsonl(path)
    assert opened.peer == Peer(client="a", started=0.0) and gap.missing == 0
