"""Captures checked by an independent implementation (scapy), and the segment view.

1. Every capture ``mailtrace show --format pcap`` writes is decoded by scapy: checksums and
   lengths valid, sequence numbers contiguous, each TCP stream equal to the transcript's bytes.
2. Hard captures for the reassembler, built with scapy (retransmission, overlap, out of order, a
   command split mid-line, RST in the middle of DATA, IPv6, an 802.1Q tag): the transcript is
   the dialogue that was sent, and ``show --packets`` labels each segment.
3. ``show --packets`` on a real lab session captured on lo by scapy's sniffer (as root).
"""

from __future__ import annotations

import io
import os
import smtplib
import threading

import pytest
from click.testing import CliRunner

from mailtrace.capture.importer import import_capture
from mailtrace.capture.segments import read_connections, text
from mailtrace.cli import main
from mailtrace.proxy.credentials import split_decoration
from mailtrace.transcript.event import Kind, Side
from mailtrace.transcript.jsonl import JsonlSink
from mailtrace.transcript.recorder import MemorySink, Recorder
from mailtrace.proxy.trace import Tracer
from test_pcap import IMAP_DIALOGUE, POP3_DIALOGUE, SMTP_DIALOGUE, transcript
from test_pcap_scapy_support import CLIENT, SERVER, TcpScript, scapy_streams

PAYLOAD = (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def wire_streams(events, show_secrets):
    """What the exporter must put on the wire for each side: the shown bytes, credentials'
    decoration left out (it travels as a comment)."""
    out = {Side.CLIENT: b"", Side.SERVER: b""}
    for e in events:
        if e.kind in PAYLOAD and e.side in out:
            out[e.side] += split_decoration(e, e.shown(show_secrets))[0]
    return out[Side.CLIENT], out[Side.SERVER]


def save_jsonl(path, events):
    sink = JsonlSink(path, show_secrets=True)
    for e in events:
        sink.handle(e)
    sink.close()
    return path


# --------------------------------------------------------------------------- 1. exports

@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
@pytest.mark.parametrize("secrets", [False, True])
@pytest.mark.parametrize("protocol,dialogue,client,server", [
    ("smtp", SMTP_DIALOGUE, "127.0.0.1:40000", "127.0.0.1:2525"),
    ("pop3", POP3_DIALOGUE, "127.0.0.1:40001", "127.0.0.1:1100"),
    ("imap", IMAP_DIALOGUE, "[::1]:40002", "[::1]:1430"),
])
def test_show_format_pcap_decoded_by_scapy(tmp_path, protocol, dialogue, client, server, secrets, suffix):
    events = transcript(protocol, dialogue, client=client, server=server)
    path = save_jsonl(tmp_path / "t.jsonl", events)
    out = tmp_path / ("t" + suffix)
    res = run("show", path, "--format", "pcap", "-o", out, *(["--show-secrets"] if secrets else []))
    assert res.exit_code == 0, res.output
    streams = scapy_streams(out)
    client, server = wire_streams(events, True)
    if not secrets:  # hidden as `mailtrace show` hides it; the decoded user travels as a comment
        client = client.replace(b" secret\r\n", b" ***\r\n")
    assert streams == [(client, server)]
    if protocol != "smtp":  # the POP3 and IMAP dialogues log in: the password travels only when asked for
        assert (b"secret" in streams[0][0]) is secrets


def test_show_format_pcap_of_intercepted_starttls_decoded_by_scapy(tmp_path):
    mem = MemorySink()
    session = Recorder([mem]).session("smtp", client="127.0.0.1:40000", server="127.0.0.1:2525", started=1e9)
    tracer = Tracer(session, "smtp", intercept=True)
    before = [("S", b"220 lab.test ESMTP\r\n"), ("C", b"EHLO c\r\n"), ("S", b"250 STARTTLS\r\n"),
              ("C", b"STARTTLS\r\n"), ("S", b"220 go ahead\r\n")]
    for i, (who, data) in enumerate(before):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=i * 0.1)
    tracer.tls_started(t=0.6)
    for i, (who, data) in enumerate(SMTP_DIALOGUE[1:]):
        tracer.feed(Side.CLIENT if who == "C" else Side.SERVER, data, t=0.7 + i * 0.1)
    tracer.finish(Side.CLIENT, "done", t=3.0)
    path = save_jsonl(tmp_path / "t.jsonl", mem.events)
    out = tmp_path / "t.pcapng"
    assert run("show", path, "--format", "pcap", "-o", out).exit_code == 0
    first, second = scapy_streams(out)  # the plaintext part, then the decrypted tunnel
    tls_at = next(i for i, e in enumerate(mem.events) if e.kind is Kind.TLS)
    assert first == wire_streams(mem.events[:tls_at], False)
    assert second == wire_streams(mem.events[tls_at:], False)
    assert second[0].startswith(b"EHLO client.test\r\n")


def test_show_format_pcap_of_a_capture_decoded_by_scapy(tmp_path):
    """A capture in, a capture out (``show x.pcap --format pcap``): scapy reads both the same."""
    script = TcpScript().handshake().dialogue(SMTP_DIALOGUE).close()
    src = tmp_path / "in.pcap"
    script.write(src)
    out = tmp_path / "out.pcapng"
    assert run("show", src, "--format", "pcap", "-o", out).exit_code == 0
    assert scapy_streams(out) == scapy_streams(src)


# --------------------------------------------------------------------------- 2. hard captures

def imported(script: TcpScript, **kw):
    mem = MemorySink()
    stats = import_capture(io.BytesIO(script.pcap()), Recorder([mem]), **kw)
    return mem.events, stats


def sent(dialogue):
    client = b"".join(d for who, d in dialogue if who == "C")
    server = b"".join(d for who, d in dialogue if who == "S")
    return client, server


def streams(events):
    return wire_streams(events, True)


def packet_rows(tmp_path, script, lang="en"):
    path = tmp_path / "hard.pcap"
    script.write(path)
    (conn,) = read_connections(path, lang=lang)
    return conn.rows


def marks(rows):
    return [m for r in rows for m in r.marks]


def test_retransmitted_segment_is_delivered_once_and_marked(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE[:3])
    mail = s.segment(CLIENT, b"MAIL FROM:<alice@lab.test>\r\n")
    again = mail.copy()
    again.time = mail.time + 0.2  # no ACK came in time: the client sends it again
    s.packets += [mail, again]
    s.dialogue(SMTP_DIALOGUE[4:]).close()
    events, stats = imported(s)
    assert stats.gaps == 0
    assert streams(events)[0].count(b"MAIL FROM") == 1
    assert [e.verb for e in events if e.kind is Kind.COMMAND] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    rows = packet_rows(tmp_path, s)
    again = [r for r in rows if text("retransmission") in r.marks]
    assert len(again) == 1 and again[0].lines == ["MAIL FROM:<alice@lab.test>"]


def test_overlapping_segments_are_trimmed(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE[:3])
    s.packets.append(s.segment(CLIENT, b"MAIL FROM:<alice", at=len(b"EHLO client.test\r\n")))
    # the retransmission repeats 6 octets and carries the rest of the line
    s.packets.append(s.segment(CLIENT, b"<alice@lab.test>\r\n", at=len(b"EHLO client.test\r\nMAIL FROM:")))
    s.dialogue(SMTP_DIALOGUE[4:]).close()
    events, stats = imported(s)
    assert streams(events) == sent(SMTP_DIALOGUE) and stats.gaps == 0
    rows = packet_rows(tmp_path, s)
    assert text("overlap", octets=6) in marks(rows)
    assert ["MAIL FROM:<alice…"] in [r.lines for r in rows]


def test_segments_out_of_order_are_put_back_in_order(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE[:2])
    first = s.segment(SERVER, b"250-lab.test\r\n")
    second = s.segment(SERVER, b"250-PIPELINING\r\n250 8BITMIME\r\n")
    s.packets += [second, first]  # the second half arrives first
    s.dialogue(SMTP_DIALOGUE[3:]).close()
    events, stats = imported(s)
    assert streams(events) == sent(SMTP_DIALOGUE) and stats.gaps == 0
    ehlo_reply = [e.raw for e in events if e.kind is Kind.REPLY and e.code == "250"][:3]
    assert ehlo_reply == [b"250-lab.test\r\n", b"250-PIPELINING\r\n", b"250 8BITMIME\r\n"]
    rows = packet_rows(tmp_path, s)
    early = next(r for r in rows if r.lines and r.lines[0] == "250-PIPELINING")
    late = next(r for r in rows if r.lines == ["250-lab.test"])
    assert early.lines == ["250-PIPELINING", "250 8BITMIME"]  # two reply lines in one segment
    assert text("missing-before", octets=14) in early.marks and text("out-of-order") in late.marks


def test_command_split_mid_line_is_one_command(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE[:3])
    s.say(CLIENT, b"MAIL FROM:<al").say(CLIENT, b"ice@lab.test>\r\n")
    s.dialogue(SMTP_DIALOGUE[4:]).close()
    events, _ = imported(s)
    mail = [e for e in events if e.kind is Kind.COMMAND and e.verb == "MAIL"]
    assert len(mail) == 1 and mail[0].raw == b"MAIL FROM:<alice@lab.test>\r\n"
    rows = packet_rows(tmp_path, s)
    assert [r.lines for r in rows if r.lines and "al" in r.lines[0] and "FROM" in r.lines[0] or
            r.lines == ["…ice@lab.test>"]] == [["MAIL FROM:<al…"], ["…ice@lab.test>"]]


def test_rst_in_the_middle_of_data(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE[:9])
    s.say(CLIENT, b"Subject: cut\r\n\r\nhalf a mess").reset(CLIENT)
    events, stats = imported(s)
    close = events[-1]
    assert close.kind is Kind.CLOSE and "RST" in close.reason.text
    assert not any(e.raw == b"250 2.0.0 queued\r\n" for e in events)
    assert b"half a mess" in streams(events)[0]
    rows = packet_rows(tmp_path, s, lang="es")
    assert rows[-1].flags == "R" and rows[-1].marks == [text("rst-client", "es")]
    assert rows[-2].lines[-1] == "half a mess…"  # the line never ended


def test_ipv6_capture(tmp_path):
    s = TcpScript(client=("2001:db8::10", 40001), server=("2001:db8::25", 110)).handshake()
    s.dialogue(POP3_DIALOGUE).close(SERVER)
    events, stats = imported(s, show_secrets=True)
    assert events[0].protocol == "pop3" and events[0].peer.server == "[2001:db8::25]:110"
    assert streams(events) == sent(POP3_DIALOGUE)
    rows = packet_rows(tmp_path, s)
    assert text("fin-server") in rows[-3].marks and text("fin-client") in rows[-2].marks
    assert any(r.lines == ["PASS ***  [password ***]"] for r in rows)  # hidden as in `mailtrace show`


def test_vlan_tagged_capture(tmp_path):
    s = TcpScript(vlan=42, server=("10.0.0.25", 143), client=("10.0.0.10", 40002)).handshake()
    s.dialogue(IMAP_DIALOGUE).close()
    events, _ = imported(s)
    assert events[0].protocol == "imap" and streams(events) == sent(IMAP_DIALOGUE)
    assert [r.lines for r in packet_rows(tmp_path, s) if r.lines][0] == ["* OK IMAP4rev1 ready"]


def test_show_packets_cli_english_and_spanish(tmp_path):
    s = TcpScript().handshake().dialogue(SMTP_DIALOGUE).close()
    path = tmp_path / "c.pcap"
    s.write(path)
    res = run("show", path, "--packets")
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    assert out[0].startswith("TCP connection 1: client 127.0.0.1:40001 → server 127.0.0.1:25 (SMTP)")
    assert f"{len(s.packets)} segments, {len(SMTP_DIALOGUE)} with data" in out[0]
    assert text("syn") in out[2] and " S " in out[2]
    assert " SA " in out[3] and " A " in out[4] and text("handshake-done") in out[4]
    assert "220 lab.test ESMTP ready" in out[5] and " PA " in out[5]
    assert any(text("fin-client") in line and " FA " in line for line in out)
    es = run("show", path, "--packets", "--lang", "es")
    assert es.exit_code == 0 and "Conexión TCP 1" in es.output and text("syn", "es") in es.output
    assert text("syn", "es") != text("syn")


def test_show_packets_refuses_what_it_cannot_show(tmp_path):
    path = save_jsonl(tmp_path / "t.jsonl", transcript("smtp", SMTP_DIALOGUE))
    res = run("show", path, "--packets")
    assert res.exit_code == 2 and "needs a capture" in res.output and "Traceback" not in res.output
    pcap = tmp_path / "c.pcap"
    TcpScript().handshake().dialogue(SMTP_DIALOGUE).close().write(pcap)
    res = run("show", pcap, "--packets", "--format", "html")
    assert res.exit_code == 2 and "--packets" in res.output
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(pcap.read_bytes()[:10])
    res = run("show", broken, "--packets")
    assert res.exit_code == 1 and "truncated" in res.output and "Traceback" not in res.output
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(pcap.read_bytes()[:-7])  # the last packet cut short, as when tcpdump is killed
    res = run("show", cut, "--packets")
    assert res.exit_code == 0 and text("syn") in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- 3. a real session

@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root (or CAP_NET_RAW)")
def test_show_packets_of_a_real_lab_session_captured_by_scapy(tmp_path, lab):
    from scapy.sendrecv import AsyncSniffer
    from scapy.utils import wrpcap

    from scapy.config import conf
    from scapy.layers.inet import TCP

    port = lab.port()
    ready, closed, fins = threading.Event(), threading.Event(), set()

    def watch(pkt) -> None:  # the capture is complete with the ACK that follows both FINs
        tcp = pkt.getlayer(TCP)
        if tcp is not None and "F" in tcp.flags:
            fins.add(tcp.sport)
        elif tcp is not None and (len(fins) == 2 or "R" in tcp.flags):
            closed.set()

    # scapy's L2socket drops the outgoing copy of each loopback packet, as tcpdump does
    sniffer = AsyncSniffer(opened_socket=conf.L2socket(iface="lo", filter=f"tcp port {port}"), prn=watch,
                           started_callback=ready.set)
    sniffer.start()
    assert ready.wait(10)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("student.test")
        smtp.sendmail("alice@lab.test", ["bob@lab.test"], b"Subject: on the wire\r\n\r\nCan you see me?\r\n")
    lab.wait_closed(1)
    closed.wait(10)
    packets = sniffer.stop()
    path = tmp_path / "lab.pcap"
    wrpcap(str(path), packets)
    res = run("show", path, "--packets", "--port", port)
    assert res.exit_code == 0, res.output
    out = res.output
    for label in ("syn", "syn-ack", "handshake-done", "fin-client", "fin-server"):
        assert text(label) in out, label
    rows = read_connections(path, port=port)[0].rows
    greeting = next(r for r in rows if r.length)
    assert greeting.side == 1 and greeting.lines[0].startswith("220 ")  # the server speaks first, after the handshake
    assert [r.flags for r in rows[:3]] == ["S", "SA", "A"]
    ehlo_reply = next(r for r in rows if r.lines and r.lines[0].startswith("250-"))
    assert len(ehlo_reply.lines) > 1 and ehlo_reply.lines[-1].startswith("250 ")  # one segment, several lines
    assert any(r.lines == ["QUIT"] for r in rows)

