"""``import_capture`` reads a pcap file named by its path in one loop over the mapped file
(``CaptureImporter.feed_pcap``: record and Ethernet/IPv4/TCP headers read in place), and any
other source (a stream, a pipe, pcapng) packet by packet (``read_packets`` + ``tcp_segment``).
Both must give the same transcript and the same counts, for every kind of frame and for files
cut short.  Captures are built with scapy (test_pcap_scapy_support), not by our own writer."""

from __future__ import annotations

import io

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from mailtrace.capture.importer import import_capture
from mailtrace.transcript.event import Kind
from mailtrace.transcript.recorder import MemorySink, Recorder
from test_pcap import POP3_DIALOGUE, SMTP_DIALOGUE
from test_pcap_scapy_support import CLIENT, SERVER, TcpScript


def _both(path):
    """(events, stats) read from the path (mapped file) and from a stream of the same bytes."""
    results = []
    for source in (path, io.BytesIO(path.read_bytes())):
        mem = MemorySink()
        stats = import_capture(source, Recorder([mem]), show_secrets=True)
        # (an open event's time is the clock's at import; every other comes from the packets)
        results.append(([(e.session, e.seq, e.t if e.kind is not Kind.OPEN else 0, e.side, e.kind, e.raw, e.missing,
                          e.reason, e.notes, e.redacted) for e in mem.events],
                        (stats.packets, stats.tcp_segments, stats.sessions, stats.gaps, stats.truncated,
                         stats.first_ts, stats.last_ts)))
    return results


def _mixed() -> list:
    """IPv4, IPv6, a VLAN tag, an IP fragment, a UDP packet, a retransmission, a reset."""
    plain = TcpScript(client=("10.0.0.1", 40001)).handshake().dialogue(SMTP_DIALOGUE).close()
    six = TcpScript(client=("2001:db8::1", 40002), server=("2001:db8::25", 110)).handshake().dialogue(POP3_DIALOGUE)
    six.close(SERVER)
    tagged = TcpScript(client=("10.0.0.2", 40003), vlan=7).handshake().dialogue(SMTP_DIALOGUE[:5])
    tagged.packets.append(tagged.segment(CLIENT, b"MAIL FROM:<a@lab.test>\r\n", at=len(b"EHLO client.test\r\n")))
    tagged.reset(CLIENT)
    late = TcpScript(client=("10.0.0.3", 40004))  # no handshake: a capture started mid-session
    late.dialogue(SMTP_DIALOGUE[3:])
    odd = [Ether() / IP(src="10.0.0.9", dst="10.0.0.10", flags="MF") / TCP(sport=1, dport=25, flags="PA") / (b"x" * 40),
           Ether() / IP(src="10.0.0.9", dst="10.0.0.10") / UDP(sport=53, dport=53) / b"query"]
    for pkt in odd:
        pkt.time = 1_700_000_000.5
    packets = plain.packets + six.packets + tagged.packets + late.packets + odd
    return sorted(packets, key=lambda p: float(p.time))


def test_every_kind_of_frame_reads_the_same_both_ways(tmp_path):
    from scapy.utils import wrpcap

    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), _mixed())
    (events, stats), (events_stream, stats_stream) = _both(path)
    assert stats == stats_stream
    assert events == events_stream
    assert stats[2] == 4 and stats[0] == len(_mixed())  # every mail conversation, every packet counted


@pytest.mark.parametrize("cut", [1, 10, 17, 60])
def test_a_file_cut_short_reads_the_same_both_ways(tmp_path, cut):
    script = TcpScript().handshake().dialogue(SMTP_DIALOGUE)
    whole = script.pcap()
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:-cut])  # inside the last record's data, or its header (16 octets)
    (events, stats), (events_stream, stats_stream) = _both(path)
    assert stats == stats_stream and stats[4] > 0  # truncated, said
    assert events == events_stream
    raws = [e[5] for e in events]
    assert b"QUIT\r\n" in raws and b"221 2.0.0 bye\r\n" not in raws  # the last record (the 221) was cut


def test_only_the_global_header(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(TcpScript().pcap()[:24])
    (events, stats), (events_stream, stats_stream) = _both(path)
    assert stats == stats_stream and stats[0] == 0 and events == events_stream == []
