"""Transcripts exported as captures Wireshark and tshark decode without configuration.

Each session becomes a well-formed TCP conversation (RFC 9293 §3.5): SYN, SYN-ACK, ACK at the
session's start; one PSH/ACK segment per event *as it was written* (split only above
``MAX_SEGMENT``), sequence and acknowledgement numbers consistent on both sides; FIN/ACK from
the side that closed.  Timestamps are real: the session's ``started`` wall clock plus ``t``.

Choices (documented for instructors):

* **Ports.**  The server port is the protocol's standard one (SMTP 25, POP3 110, IMAP 143),
  because Wireshark picks its dissector by port; the lab's 2525/1100/1430 would show as bare
  TCP unless students set "Decode As".  The real address is in the first packet's comment.
* **Annotations** travel as pcapng packet comments (``frame.comment`` in tshark) when the file
  ends in ``.pcapng``; a ``.pcap`` file has none.
* **TLS.**  Without interception the export stops at the server's "go ahead" to STARTTLS: the
  rest was never seen.  An *intercepted* STARTTLS session is written as two conversations: the
  plaintext one up to STARTTLS (closed there), and the decrypted dialogue as a second
  conversation from the next client port, commented "decrypted by mailtrace --intercept-tls".
  Wireshark would hand anything after STARTTLS on the first stream to its TLS dissector, so
  plaintext there would be shown as broken TLS.  ``mailtrace show`` (``importer``) reads the
  two back as one session, as the proxy recorded it.  Intercepted implicit TLS (465/993/995) is
  written as one plaintext conversation on the standard plaintext port.
* **Gaps** advance the sequence number by the missing octets, so Wireshark says "previous
  segment not captured" exactly where the transcript says bytes are missing.
"""

from __future__ import annotations

import ipaddress
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

from mailtrace import knowledge
from mailtrace.capture.pcapfile import PcapWriter
from mailtrace.proxy.credentials import split_decoration
from mailtrace.proxy.registry import STANDARD_PORT
from mailtrace.transcript.event import Event, Kind, Peer, Side, Tls

MAX_SEGMENT = 65000  # octets of payload per segment: an IPv4 packet holds at most 65535 (RFC 791 §3.1)
MAC = {Side.CLIENT: b"\x02\x00\x00\x00\x00\x01", Side.SERVER: b"\x02\x00\x00\x00\x00\x02"}
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
ISN = {Side.CLIENT: 1000, Side.SERVER: 5000}  # initial sequence numbers (any value is valid)
PAYLOAD_KINDS = (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(array("H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    return struct.unpack("!H", struct.pack("=H", s))[0]


def tcp_frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes,
              src_side: Side, ip_id: int = 0) -> bytes:
    """An Ethernet frame carrying one IPv4 or IPv6 TCP segment with correct checksums."""
    s_ip, d_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    length = len(tcp) + len(payload)
    if s_ip.version == 4 and d_ip.version == 4:
        pseudo = s_ip.packed + d_ip.packed + struct.pack("!BBH", 0, 6, length)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, ip_id & 0xFFFF, 0x4000, 64, 6, 0, s_ip.packed, d_ip.packed)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        ethertype = 0x0800
    else:
        s6 = s_ip if s_ip.version == 6 else ipaddress.IPv6Address("::ffff:" + str(s_ip))
        d6 = d_ip if d_ip.version == 6 else ipaddress.IPv6Address("::ffff:" + str(d_ip))
        pseudo = s6.packed + d6.packed + struct.pack("!IxxxB", length, 6)
        ip = struct.pack("!IHBB16s16s", 6 << 28, length, 6, 64, s6.packed, d6.packed)
        ethertype = 0x86DD
    csum = _checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    other = Side.SERVER if src_side is Side.CLIENT else Side.CLIENT
    return MAC[other] + MAC[src_side] + struct.pack("!H", ethertype) + ip + tcp + payload


def parse_addr(text: str) -> tuple[str, int] | None:
    """'127.0.0.1:2525' or '[::1]:25' -> (host, port); None if it is not an IP address and port."""
    text = (text or "").strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
        return host, int(port)
    except ValueError:
        return None


@dataclass
class _Conversation:
    client: tuple[str, int]
    server: tuple[str, int]
    t0: float
    next_seq: dict = field(default_factory=lambda: dict(ISN))
    open: bool = True
    ip_id: int = 1
    last_t: float = 0.0


class PcapSink:
    """A recorder sink (or a post-hoc exporter) that writes each session as TCP segments."""

    def __init__(self, target: str | Path | BinaryIO, *, pcapng: bool | None = None, show_secrets: bool = False,
                 lang: str = "en", comments: bool = True) -> None:
        if isinstance(target, (str, Path)):
            self._file: BinaryIO = open(target, "wb")
            self._owned = True
            if pcapng is None:
                pcapng = str(target).lower().endswith(".pcapng")
        else:
            self._file = target
            self._owned = False
        self.writer = PcapWriter(self._file, pcapng=bool(pcapng))
        self.show_secrets = show_secrets
        self.lang = lang
        self.comments = comments and bool(pcapng)
        self._conv: dict[str, _Conversation] = {}
        self._ports_used: set[int] = set()
        self._next_port = 40001

    # -- helpers ------------------------------------------------------------------------
    def _client_port(self, wanted: int | None) -> int:
        port = wanted if wanted and wanted not in self._ports_used else None
        while port is None:
            if self._next_port not in self._ports_used:
                port = self._next_port
            self._next_port = 40001 + (self._next_port - 40000) % 25000
        self._ports_used.add(port)
        return port

    def _send(self, conv: _Conversation, side: Side, t: float, flags: int, payload: bytes = b"", comment: str = "") -> None:
        src, dst = (conv.client, conv.server) if side is Side.CLIENT else (conv.server, conv.client)
        other = Side.SERVER if side is Side.CLIENT else Side.CLIENT
        seq, ack = conv.next_seq[side], conv.next_seq[other]
        frame = tcp_frame(src, dst, seq, ack if flags & ACK else 0, flags, payload, side, conv.ip_id)
        conv.ip_id += 1
        conv.last_t = t
        self.writer.write(conv.t0 + t, frame, comment if self.comments else "")
        conv.next_seq[side] = seq + len(payload) + (1 if flags & (SYN | FIN) else 0)

    def _handshake(self, conv: _Conversation, t: float, comment: str) -> None:
        self._send(conv, Side.CLIENT, t, SYN, comment=comment)
        self._send(conv, Side.SERVER, t, SYN | ACK)
        self._send(conv, Side.CLIENT, t, ACK)

    def _finish(self, conv: _Conversation, side: Side, t: float, comment: str = "") -> None:
        if not conv.open:
            return
        conv.open = False
        first = Side.CLIENT if side is Side.NONE else side
        other = Side.SERVER if first is Side.CLIENT else Side.CLIENT
        self._send(conv, first, t, FIN | ACK, comment=comment)
        self._send(conv, other, t, FIN | ACK)
        self._send(conv, first, t, ACK)

    def _comment(self, event: Event) -> str:
        ann = knowledge.annotate(event, self.lang)
        parts = []
        if ann.meaning:
            parts.append(ann.meaning + (f" ({ann.rfc})" if ann.rfc else ""))
        for meaning, rfc, detail in ann.problems:
            parts.append("! " + meaning + (f" [{detail}]" if detail else "") + (f" ({rfc})" if rfc else ""))
        for meaning, rfc, detail in ann.infos:  # what happened, no rule broken
            parts.append("ℹ " + meaning + (f" [{detail}]" if detail else "") + (f" ({rfc})" if rfc else ""))
        return "\n".join(parts)

    # -- the sink -----------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        if event.kind is Kind.OPEN:
            self._open(event)
            return
        conv = self._conv.get(event.session)
        if conv is None:
            return
        if event.kind is Kind.TLS:
            self._tls(event, conv)
        elif event.kind is Kind.CLOSE:
            reason = knowledge.close_reason(event, self.lang)
            self._finish(conv, event.side, event.t,
                         knowledge.phrase("pcap", "closed-why" if reason else "closed", self.lang, reason=reason))
            self._conv.pop(event.session, None)
        elif event.kind is Kind.GAP:
            side = event.side if event.side is not Side.NONE else Side.CLIENT
            conv.next_seq[side] += event.missing
        elif event.kind in PAYLOAD_KINDS and event.side in (Side.CLIENT, Side.SERVER) and conv.open:
            payload, decoded = split_decoration(event, event.shown(self.show_secrets))
            comment = self._comment(event)
            if decoded and self.comments:  # the decoded credentials travel as a comment, not as bytes
                comment = f"{comment}\n[{decoded}]" if comment else f"[{decoded}]"
            for start in range(0, max(len(payload), 1), MAX_SEGMENT):
                self._send(conv, event.side, event.t, PSH | ACK, payload[start:start + MAX_SEGMENT], comment)
                comment = ""
        elif event.kind is Kind.VIOLATION and conv.open and self.comments:
            # no bytes of its own: a bare ACK from that side carries the comment
            side = event.side if event.side is not Side.NONE else Side.CLIENT
            self._send(conv, side, event.t, ACK, comment=self._comment(event))
        self.writer.flush()

    def _open(self, event: Event) -> None:
        peer = event.peer or Peer()
        proto = event.protocol
        client = parse_addr(peer.client)
        server = parse_addr(peer.server)
        std = STANDARD_PORT.get(proto)
        s_host = server[0] if server else "127.0.0.1"
        c_host = client[0] if client else s_host
        if (ipaddress.ip_address(c_host).version == 6) != (ipaddress.ip_address(s_host).version == 6):
            c_host = s_host = "127.0.0.1"
        s_port = std or (server[1] if server else 9)
        c_port = self._client_port(client[1] if client and client[1] != s_port else None)
        conv = _Conversation((c_host, c_port), (s_host, s_port), peer.started)
        self._conv[event.session] = conv
        note = (f"mailtrace session {event.session} ({proto}): {peer.client or '?'} -> {peer.server or '?'}"
                + (f"; exported on port {s_port} so Wireshark decodes {proto.upper()}" if server and server[1] != s_port else ""))
        self._handshake(conv, event.t, note)

    def _tls(self, event: Event, conv: _Conversation) -> None:
        tls = event.tls or Tls()
        intercepted = tls.intercepted is True
        if tls.how == "implicit":
            if not intercepted:
                conv.open = False  # nothing readable follows; the close event will not write a FIN
                self._finish_quiet(conv, event)
            return
        if not intercepted:
            self._finish(conv, Side.CLIENT, event.t, knowledge.phrase("pcap", "starttls-unseen", self.lang))
            return
        self._finish(conv, Side.CLIENT, event.t, knowledge.phrase("pcap", "starttls-decrypted", self.lang))
        new = _Conversation((conv.client[0], self._client_port(None)), conv.server, conv.t0)
        self._conv[event.session] = new
        self._handshake(new, event.t, knowledge.phrase("pcap", "tunnel", self.lang, session=event.session,
                                                       port=conv.client[1]))

    def _finish_quiet(self, conv: _Conversation, event: Event) -> None:
        if self.comments:
            self._send(conv, Side.CLIENT, event.t, ACK, comment=knowledge.phrase("pcap", "implicit-unseen", self.lang))

    def close(self) -> None:
        for conv in self._conv.values():
            if conv.open:
                self._finish(conv, Side.CLIENT, conv.last_t)
        self._conv.clear()
        self.writer.flush()
        if self._owned and not self._file.closed:
            self._file.close()


def export(events: Iterable[Event], target: str | Path | BinaryIO, **kw) -> None:
    sink = PcapSink(target, **kw)
    try:
        for event in events:
            sink.handle(event)
    finally:
        sink.close()
