"""``mailtrace show``: JSONL and captures in; text, HTML, JSONL, pcap out; clear errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace.transcript.event import Kind
from mailtrace.transcript.jsonl import JsonlSink, read_jsonl
from test_pcap import POP3_DIALOGUE, SMTP_DIALOGUE, streams_of, transcript
from test_pcap_scapy_support import scapy_streams


def _jsonl(tmp_path, events, name="t.jsonl", show_secrets=False):
    path = tmp_path / name
    sink = JsonlSink(path, show_secrets=show_secrets)
    for e in events:
        sink.handle(e)
    sink.close()
    return path


def run(*args):
    return CliRunner().invoke(main, ["show", *map(str, args)])


def test_show_text_is_the_terminal_view(tmp_path):
    path = _jsonl(tmp_path, transcript("smtp", SMTP_DIALOGUE))
    res = run(path)
    assert res.exit_code == 0, res.output
    assert "S ← 220 lab.test ESMTP ready" in res.output and "C → EHLO client.test" in res.output


def test_show_decodes_credentials_hidden(tmp_path):
    path = _jsonl(tmp_path, transcript("pop3", POP3_DIALOGUE, show_secrets=False), show_secrets=True)
    assert "PASS secret" in path.read_text()  # saved with the secrets
    res = run(path)
    assert res.exit_code == 0, res.output
    assert "secret" not in res.output and "PASS ***  [password ***]" in res.output
    res = run(path, "--show-secrets")
    assert "[password secret]" in res.output


def test_show_html_jsonl_and_pcap_round_trip(tmp_path):
    events = transcript("smtp", SMTP_DIALOGUE)
    path = _jsonl(tmp_path, events)
    html = tmp_path / "t.html"
    assert run(path, "--format", "html", "-o", html, "--lang", "es").exit_code == 0
    assert "<!DOCTYPE html>" in html.read_text() and "Sesión" in html.read_text()
    pcap = tmp_path / "t.pcapng"
    res = run(path, "--format", "pcap", "-o", pcap)
    assert res.exit_code == 0, res.output
    streams = streams_of(events)
    assert scapy_streams(pcap) == [(streams["C"], streams["S"])]  # an independent decoder agrees
    out = tmp_path / "back.jsonl"
    res = run(pcap, "--format", "jsonl", "-o", out)
    assert res.exit_code == 0, res.output
    back = list(read_jsonl(out))
    raw = lambda evs: [e.raw for e in evs if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA)]  # noqa: E731
    assert raw(back) == raw(events)
    res = run(pcap)
    assert res.exit_code == 0 and "EHLO client.test" in res.output


def test_show_bad_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\xff\xfe garbage")
    res = run(junk)
    assert res.exit_code == 1 and "Traceback" not in res.output and "Error:" in res.output
    notjson = tmp_path / "x.jsonl"
    notjson.write_text("hello\n")
    assert "not JSON" in run(notjson).output
    wrong = tmp_path / "w.jsonl"
    wrong.write_text(json.dumps({"format": "other"}) + "\n")
    assert "not a mailtrace transcript" in run(wrong).output
    truncated = tmp_path / "t.pcap"
    truncated.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00")
    res = run(truncated)
    assert res.exit_code == 1 and "truncated" in res.output
    assert run(tmp_path / "missing.jsonl").exit_code == 2
    res = run(_jsonl(tmp_path, transcript("smtp", SMTP_DIALOGUE)), "--format", "pcap")
    assert res.exit_code == 2 and "-o FILE" in res.output
