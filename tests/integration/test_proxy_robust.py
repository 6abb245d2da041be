"""Bad input never crashes the proxy's parsers or the capture reader (hypothesis), and framing
does not depend on how the bytes were split."""

from __future__ import annotations

import io
import socket
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrace.capture.importer import import_capture
from mailtrace.capture.packets import tcp_segment
from mailtrace.capture.pcapfile import CaptureFormatError, read_packets
from mailtrace.proxy.credentials import CredentialDecoder
from mailtrace.proxy.fallback import LineObserver
from mailtrace.transcript.event import Kind, Side, command, reply
from mailtrace.transcript.recorder import MemorySink, Recorder

DIALOGUE = [(Side.SERVER, b"220 hi\r\n"), (Side.CLIENT, b"EHLO x\r\nMAIL FROM:<a@b>\r\n"),
            (Side.SERVER, b"250-x\r\n250 OK\r\n250 OK\r\n"), (Side.CLIENT, b"DATA\r\n"), (Side.SERVER, b"354 go\r\n"),
            (Side.CLIENT, b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"), (Side.SERVER, b"250 ok\r\n221 bye\r\n")]


def _events(chunk: int):
    obs = LineObserver("smtp")
    out = []
    for side, data in DIALOGUE:
        for i in range(0, len(data), chunk):
            piece = data[i:i + chunk]
            out += obs.feed_client(piece) if side is Side.CLIENT else obs.feed_server(piece)
    out += obs.close()
    return [(e.side, e.kind, e.raw) for e in out]


@pytest.mark.parametrize("chunk", [1, 2, 7, 10_000])
def test_fallback_observer_frames_by_line_not_by_chunk(chunk):
    events = _events(chunk)
    assert events == _events(10_000)
    assert [k for _, k, _ in events].count(Kind.DATA) == 1
    assert (Side.CLIENT, Kind.COMMAND, b"QUIT\r\n") in events


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=30), st.sampled_from(["smtp", "pop3", "imap", "tcp"]))
@settings(max_examples=150, deadline=None)
def test_line_observer_and_decoder_never_raise(chunks, protocol):
    obs = LineObserver(protocol)
    dec = CredentialDecoder(protocol, show_secrets=True)
    for is_client, data in chunks:
        for event in (obs.feed_client(data) if is_client else obs.feed_server(data)):
            dec.feed(event)
    obs.close()


@given(st.sampled_from(["AUTH PLAIN ", "AUTH LOGIN ", "PASS ", "a1 LOGIN ", "a1 AUTHENTICATE PLAIN ", "AUTH PLAIN"]),
       st.binary(max_size=80), st.sampled_from(["smtp", "pop3", "imap"]))
@settings(max_examples=200, deadline=None)
def test_credential_decoder_on_any_payload(prefix, payload, protocol):
    dec = CredentialDecoder(protocol)
    dec.feed(command(prefix.encode() + payload + b"\r\n", prefix.split()[0]))
    dec.feed(reply(b"334 \r\n", "334"))
    out = dec.feed(command(payload + b"\r\n", ""))
    assert out.raw == payload + b"\r\n"


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_capture_reader_on_garbage(data):
    for head in (b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b""):
        try:
            import_capture(io.BytesIO(head + data), Recorder([MemorySink()]))
        except CaptureFormatError:
            pass


@given(st.binary(max_size=120), st.sampled_from([0, 1, 101, 113, 276, 108, 228]))
@settings(max_examples=300, deadline=None)
def test_packet_parser_on_garbage(frame, linktype):
    tcp_segment(linktype, frame)


def test_pcapng_with_unknown_blocks_and_comments_reads():
    from mailtrace.capture.export import export
    from test_pcap import SMTP_DIALOGUE, transcript

    buf = io.BytesIO()
    export(transcript("smtp", SMTP_DIALOGUE), buf, pcapng=True)
    data = buf.getvalue()
    custom = b"\xad\x0b\x00\x00" + (16).to_bytes(4, "little") + b"abcd" + (16).to_bytes(4, "little")  # a custom block
    frames = list(read_packets(io.BytesIO(data + custom)))
    assert len(frames) > 10


def test_cli_warns_for_non_loopback_listen_and_rejects_unresolvable_host():
    from click.testing import CliRunner

    from mailtrace.cli import main

    res = CliRunner().invoke(main, ["proxy", "--to", "no-such-host.invalid:25"])
    assert res.exit_code == 2 and "cannot resolve" in res.output
    # a non-loopback --listen starts with a warning (then we stop it)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "proxy", "--listen", "0.0.0.0:0", "--to",
                             f"127.0.0.1:{port}", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on 0.0.0.0:" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "not loopback" in err and "Traceback" not in err


def test_proxy_messages_knowledge_in_sync_both_ways():
    from mailtrace import knowledge
    from mailtrace.proxy.messages import KEYS, message

    table = knowledge.load("common").get("proxy", {})
    assert set(table) == set(KEYS)
    for key, entry in table.items():
        assert entry.meaning("en") and entry.meaning("es") and entry.texts.get("es"), key
    assert message("decoded-plain", "es", user="alice", password="***") == 'base64 de: usuario "alice", contraseña ***'


def test_decoded_credentials_in_spanish():
    dec = CredentialDecoder("pop3", lang="es")
    out = dec.feed(command(b"PASS secreto\r\n", "PASS"))
    assert out.text() == "PASS ***  [contraseña ***]" and out.raw == b"PASS secreto\r\n"
