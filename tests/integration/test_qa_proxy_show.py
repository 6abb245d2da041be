"""QA regressions (independent checker): pcap export of decoded credentials, `show` into a closed pipe."""

from __future__ import annotations

import io
import subprocess
import sys

from mailtrace.capture.export import export
from mailtrace.capture.importer import import_capture
from mailtrace.capture.pcapfile import read_packets
from mailtrace.proxy.trace import Tracer
from mailtrace.transcript.event import Kind, Side, command
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.recorder import MemorySink, Recorder

POP3 = [("S", b"+OK ready\r\n"), ("C", b"USER alice\r\n"), ("S", b"+OK\r\n"), ("C", b"PASS s3cret\r\n"),
        ("S", b"+OK 0 messages\r\n"), ("C", b"QUIT\r\n"), ("S", b"+OK bye\r\n")]
SMTP_AUTH_LOGIN = [("S", b"220 ready\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250-x\r\n250 AUTH LOGIN\r\n"),
                   ("C", b"AUTH LOGIN\r\n"), ("S", b"334 VXNlcm5hbWU6\r\n"), ("C", b"Y2Fyb2w=\r\n"),
                   ("S", b"334 UGFzc3dvcmQ6\r\n"), ("C", b"czNjcmV0\r\n"), ("S", b"235 ok\r\n"),
                   ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")]


def traced(protocol, dialogue):
    """Events as the proxy records them without --show-secrets (decoded, password hidden)."""
    mem = MemorySink()
    session = Recorder([mem]).session(protocol, client="127.0.0.1:40000", server="127.0.0.1:110", mode="proxy",
                                      started=1_700_000_000.0)
    tracer = Tracer(session, protocol, show_secrets=False)
    for i, (who, data) in enumerate(dialogue):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.1 * (i + 1))
    tracer.finish(Side.CLIENT, "client closed", t=1.0)
    return mem.events


def client_payloads(pcap: bytes) -> list[bytes]:
    mem = MemorySink()
    import_capture(io.BytesIO(pcap), Recorder([mem]), show_secrets=True)
    return [e.raw for e in mem.events if e.side is Side.CLIENT and e.kind in (Kind.COMMAND, Kind.DATA)]


def test_pcap_export_keeps_the_decoded_credentials_out_of_the_tcp_payload():
    """The annotation "[password ***]" is a note, not bytes the client sent: in a pcap it must
    not appear inside the PASS segment (Wireshark would show it as part of the command)."""
    buf = io.BytesIO()
    export(traced("pop3", POP3), buf, pcapng=False)
    sent = client_payloads(buf.getvalue())
    assert b"PASS ***\r\n" in sent
    assert not any(b"  [" in raw for raw in sent), sent
    assert b"s3cret" not in buf.getvalue()


def test_pcapng_export_carries_the_decoded_user_as_a_comment():
    buf = io.BytesIO()
    export(traced("smtp", SMTP_AUTH_LOGIN), buf, pcapng=True)
    sent = client_payloads(buf.getvalue())
    assert sent[2:4] == [b"***\r\n", b"***\r\n"]  # the two AUTH LOGIN lines, payload hidden
    assert b'"carol"' in buf.getvalue()  # ... and the decoded user name rides in a comment
    assert b"s3cret" not in buf.getvalue()
    assert len(list(read_packets(io.BytesIO(buf.getvalue())))) > 10


def test_show_into_a_closed_pipe_is_quiet(tmp_path):
    """`mailtrace show big.jsonl --format jsonl | head -1` must not blame the input file."""
    path = tmp_path / "t.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        sink = JsonlSink(f)
        session = Recorder([sink]).session("smtp", client="127.0.0.1:40000", server="127.0.0.1:25")
        for i in range(3000):
            session.record(command(b"NOOP %d\r\n" % i, "NOOP"))
        session.close()
    proc = subprocess.Popen([sys.executable, "-m", "mailtrace", "show", str(path), "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "cannot read" not in err and "Traceback" not in err
