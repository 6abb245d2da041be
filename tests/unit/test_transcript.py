"""The transcript model: recorder stamping, JSONL round trip, redaction, text layout."""

import io
import json

import pytest

from mailtrace.transcript.event import Event, Kind, Note, Side, command, reply
from mailtrace.transcript.jsonl import JsonlSink, TranscriptFormatError, read_jsonl
from mailtrace.transcript.recorder import MemorySink, Recorder
from mailtrace.transcript.text import TextSink, render_text


def _session(sinks):
    rec = Recorder(sinks)
    s = rec.session("smtp", client="127.0.0.1:4000", server="127.0.0.1:2525")
    s.record(reply(b"220 lab.test ESMTP\r\n", "220", state="handshake"))
    s.record(command(b"HELO crepes.fr\r\n", "HELO", state="handshake"))
    s.record(command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "AUTH", redacted=b"AUTH PLAIN ***\r\n"))
    s.record(command(b"RCPT TO: bob@lab.test\r\n", "RCPT", notes=(Note("rcpt-syntax", "space after colon"),)))
    s.record(Event(side=Side.CLIENT, kind=Kind.DATA, raw=b"Subject: \xff\r\n.\r\n", verb="DATA"))
    s.close(Side.CLIENT, "bye")
    return rec


def test_recorder_stamps_order_session_and_protocol():
    mem = MemorySink()
    _session([mem])
    assert [e.seq for e in mem.events] == list(range(len(mem.events)))
    assert {e.session for e in mem.events} == {"smtp-1"}
    assert all(e.protocol == "smtp" for e in mem.events)
    assert mem.events[0].kind is Kind.OPEN and mem.events[-1].kind is Kind.CLOSE
    assert all(b.t >= a.t for a, b in zip(mem.events, mem.events[1:]))


def test_jsonl_round_trip_redacts_secrets(tmp_path):
    path = tmp_path / "t.jsonl"
    mem = MemorySink()
    rec = _session([JsonlSink(path), mem])
    rec.close()
    head = json.loads(path.read_text().splitlines()[0])
    assert head["format"] == "mailtrace-transcript" and head["version"] == 2
    back = list(read_jsonl(path))
    assert [e.raw for e in back if e.verb != "AUTH"] == [e.raw for e in mem.events if e.verb != "AUTH"]
    auth = [e for e in back if e.verb == "AUTH"][0]
    assert b"AGFsaWNl" not in auth.raw and auth.raw == b"AUTH PLAIN ***\r\n"
    assert back[4].notes == (Note("rcpt-syntax", "space after colon"),)
    assert back[5].raw == b"Subject: \xff\r\n.\r\n"  # non-UTF-8 survives via base64


def test_jsonl_show_secrets_keeps_payload(tmp_path):
    path = tmp_path / "t.jsonl"
    _session([JsonlSink(path, show_secrets=True)]).close()
    assert b"AGFsaWNlAHNlY3JldA==" in [e.raw for e in read_jsonl(path) if e.verb == "AUTH"][0]


def test_read_jsonl_rejects_other_files(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(TranscriptFormatError):
        list(read_jsonl(bad))


def test_text_layout_follows_the_lecture():
    buf = io.StringIO()
    _session([TextSink(buf)])
    lines = buf.getvalue().splitlines()
    assert "S: 220 lab.test ESMTP" in lines
    assert "C: HELO crepes.fr" in lines
    assert "C: AUTH PLAIN ***" in lines
    assert lines.index("S: 220 lab.test ESMTP") < lines.index("C: HELO crepes.fr")


def test_terminal_folds_bodies_but_shows_short_auth_lines():
    from rich.console import Console

    from mailtrace.transcript.terminal import TerminalSink

    console = Console(file=io.StringIO(), width=200, color_system=None)
    sink = TerminalSink(console)
    rec = Recorder([sink])
    s = rec.session("smtp")
    s.record(Event(side=Side.CLIENT, kind=Kind.DATA, verb="AUTH", raw=b"Y2Fyb2w=\r\n",
                   redacted=b'***  [base64 of the user name: "carol"]\r\n'))
    s.record(Event(side=Side.CLIENT, kind=Kind.DATA, verb="DATA", raw=b"Subject: x\r\n\r\nbody\r\n.\r\n"))
    out = console.file.getvalue()
    assert 'user name: "carol"' in out and "Y2Fyb2w=" not in out
    assert "[data: 23 octets, 4 lines]" in out and "Subject: x" not in out


def test_buffered_jsonl_is_complete_after_flush_and_close(tmp_path):
    path = tmp_path / "b.jsonl"
    sink = JsonlSink(path, autoflush=False)
    rec = Recorder([sink])
    s = rec.session("smtp")
    s.record(command(b"NOOP\r\n", "NOOP"))
    rec.flush()
    assert [e.verb for e in read_jsonl(path)][-1] == "NOOP"  # live after the recorder's flush
    s.record(reply(b"250 OK\r\n", "250"))
    s.close()  # a close event is always written through
    assert [e.kind for e in read_jsonl(path)][-1] is Kind.CLOSE


def test_a_session_that_overlapped_another_keeps_its_label_until_it_closes():
    """After "--- session pop3-2 closed", smtp-1's next line must not read as pop3-2's; a
    session that runs alone later has no label."""
    from dataclasses import replace

    def ev(session: str, kind: Kind, raw: bytes = b"") -> Event:
        side = Side.NONE if kind in (Kind.OPEN, Kind.CLOSE) else Side.CLIENT
        return replace(Event(side=side, kind=kind, raw=raw, protocol=session.split("-")[0]), session=session)

    lines = render_text([ev("smtp-1", Kind.OPEN), ev("smtp-1", Kind.COMMAND, b"EHLO a\r\n"),
                         ev("pop3-2", Kind.OPEN), ev("pop3-2", Kind.COMMAND, b"USER b\r\n"),
                         ev("pop3-2", Kind.CLOSE), ev("smtp-1", Kind.COMMAND, b"NOOP\r\n"),
                         ev("smtp-1", Kind.CLOSE), ev("imap-3", Kind.OPEN),
                         ev("imap-3", Kind.COMMAND, b"a NOOP\r\n")]).splitlines()
    line = {word: next(x for x in lines if word in x) for word in ("EHLO", "USER", "C: NOOP", "a NOOP")}
    assert not line["EHLO"].startswith("[")  # alone so far
    assert line["USER"].startswith("[pop3-2] ")
    assert line["C: NOOP"].startswith("[smtp-1] ")  # pop3-2 has closed: still labelled
    assert not line["a NOOP"].startswith("[")  # imap-3 runs alone
