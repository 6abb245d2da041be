"""Captures (pcap, pcapng, or a live tcpdump pipe) to annotated transcripts.

Each TCP conversation is reassembled (``reassembly``), its protocol identified by port
(``mailtrace.proxy.registry``) or by the server's greeting ("220", "+OK", "* OK"), and both
byte streams are fed to the protocol's observer through the same ``Tracer`` as the proxy, with
the packet timestamps.  Conversations that are not mail (no known port, no greeting) are left
out unless a port or protocol was asked for.

STARTTLS: once the server accepts it (RFC 3207 §4, RFC 2595 §4), what follows on the connection
is TLS, counted but not parsed.  A capture *exported by mailtrace* from an intercepted session
(``export``) carries the decrypted dialogue instead as the next conversation from the same client
to the same server, one that starts with the client's command (no greeting: after the TLS
handshake the client speaks first, RFC 3207 §4.2).  Such a conversation is read as the rest of
the first session, so it shows as the proxy showed it, not as a new session that skipped the
greeting.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

from mailtrace.capture.packets import ETH_IPV4_TCP, Segment, ipv4_text, tcp_segment
from mailtrace.capture.pcapfile import LINKTYPE_ETHERNET, PCAP_MAGICS, CaptureFormatError, read_packets
from mailtrace.capture.reassembly import CLIENT, SERVER, Flow, Reassembler
from mailtrace.knowledge import because
from mailtrace.proxy.registry import PORT_PROTOCOL, UNKNOWN, protocol_by_greeting
from mailtrace.proxy.trace import Tracer
from mailtrace.transcript.event import Event, Kind, Side
from mailtrace.transcript.recorder import Recorder

SIDES = (Side.CLIENT, Side.SERVER)
GREETING_WAIT = 4096  # octets of a conversation looked at to find a greeting before giving up
_IGNORED = object()


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class ImportStats:
    packets: int = 0
    tcp_segments: int = 0
    conversations: int = 0
    sessions: int = 0
    gaps: int = 0
    first_ts: float | None = None
    last_ts: float = 0.0
    protocols: dict = field(default_factory=dict)
    truncated: int = 0  # octets missing from the last packet record: the file was cut short (0: complete)


class _Pending:
    """A conversation whose protocol is not known yet: its bytes wait for a greeting."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int, object, float]] = []
        self.octets = 0


class _StartTls:
    """A conversation whose server has just accepted STARTTLS: TLS records, or the end of it
    (then perhaps a decrypted continuation, see the module's docstring), comes next."""

    __slots__ = ("tracer", "t")

    def __init__(self, tracer: Tracer, t: float) -> None:
        self.tracer, self.t = tracer, t


class _Parked:
    """A STARTTLS session whose connection ended with no TLS octets: it waits for the next
    conversation between the same client host and server, which may be its decrypted rest."""

    __slots__ = ("tracer", "t", "side", "reason", "ts")

    def __init__(self, tracer: Tracer, t: float, side: int, reason: str, ts: float) -> None:
        self.tracer, self.t, self.side, self.reason, self.ts = tracer, t, side, reason, ts

    def finish(self) -> None:
        """No continuation: the rest of the connection was TLS that the capture does not show."""
        self.tracer.tls_unseen(self.t)
        self.tracer.finish(SIDES[self.side], self.reason, self.ts - self.tracer.t0)  # type: ignore[attr-defined]


class CaptureImporter:
    """The reassembler's consumer: one ``Tracer`` per mail conversation."""

    def __init__(self, recorder: Recorder, *, port: int | None = None, protocol: str | None = None,
                 show_secrets: bool = False, lang: str = "en") -> None:
        self.recorder = recorder
        self.lang = lang
        self.port = port
        self.protocol = protocol
        self.show_secrets = show_secrets
        self.stats = ImportStats()
        self.reassembler = Reassembler(self, server_side=self._from_server)
        self._parked: dict[tuple, _Parked] = {}  # (client host, server address) -> session

    # -- which side is the server, which protocol -------------------------------------
    def _from_server(self, seg) -> bool | None:
        if self.port is not None:
            if seg.sport == self.port:
                return True
            if seg.dport == self.port:
                return False
        if seg.sport in PORT_PROTOCOL and seg.dport not in PORT_PROTOCOL:
            return True
        if seg.dport in PORT_PROTOCOL and seg.sport not in PORT_PROTOCOL:
            return False
        if seg.payload[:4] in (b"+OK ", b"-ERR", b"* OK") or seg.payload[:3].isdigit():
            return True
        return None

    def _protocol_by_port(self, flow: Flow) -> str | None:
        if self.protocol:
            return self.protocol
        return PORT_PROTOCOL.get(flow.addr[SERVER][1])

    # -- the consumer interface ---------------------------------------------------------
    def open(self, flow: Flow, ts: float) -> None:
        self.stats.conversations += 1
        parked = self._parked.pop((flow.addr[CLIENT][0], flow.addr[SERVER]), None)
        if parked is not None:
            if flow.syn_seen:
                flow.consumer_state = parked  # its first octets decide (``_tracer``)
                return
            parked.finish()
        flow.consumer_state = self._first_state(flow, ts)

    def _first_state(self, flow: Flow, ts: float) -> object:
        """Ignored (not the port asked for), a session (known port), or waiting for a greeting."""
        if self.port is not None and self.port not in (flow.addr[CLIENT][1], flow.addr[SERVER][1]):
            return _IGNORED
        protocol = self._protocol_by_port(flow)
        return self._start(flow, protocol, ts) if protocol else _Pending()

    def _start(self, flow: Flow, protocol: str, ts: float) -> Tracer:
        session = self.recorder.session(protocol, client=_fmt(flow.addr[CLIENT]), server=_fmt(flow.addr[SERVER]),
                                        mode="capture", started=flow.first_ts)
        self.stats.sessions += 1
        self.stats.protocols[protocol] = self.stats.protocols.get(protocol, 0) + 1
        # intercept: ``feed`` says when STARTTLS is accepted; what follows decides (``_StartTls``)
        tracer = Tracer(session, protocol, show_secrets=self.show_secrets, intercept=True, lang=self.lang)
        tracer.t0 = flow.first_ts  # type: ignore[attr-defined]
        tracer.midstream = flow.midstream
        if flow.midstream:
            session.record(Event(side=Side.NONE, kind=Kind.GAP,
                                 reason=because("capture-started-late")), ts - flow.first_ts)
        return tracer

    def _tracer(self, flow: Flow, what: str, args: tuple, ts: float) -> Tracer | None:
        state = flow.consumer_state
        if state is _IGNORED or state is None:
            return None
        if type(state) is _StartTls:
            if what != "close":  # TLS records (or a gap in them): nobody here decrypts them
                state.tracer.tls_unseen(state.t)
                flow.consumer_state = state.tracer
                return state.tracer
            side, reason = args
            key = (flow.addr[CLIENT][0], flow.addr[SERVER])
            old = self._parked.pop(key, None)
            if old is not None:
                old.finish()
            self._parked[key] = _Parked(state.tracer, state.t, side, reason, ts)
            flow.consumer_state = _IGNORED
            return None
        if type(state) is _Parked:
            if what == "data" and args[0] == CLIENT:  # the client speaks first: the decrypted rest
                tracer = state.tracer
                tracer.tls_started(flow.first_ts - tracer.t0)  # type: ignore[attr-defined]  (when its tunnel opened)
                flow.consumer_state = tracer
                return tracer
            state.finish()  # a new session of its own (it opens with a greeting, or not at all)
            flow.consumer_state = self._first_state(flow, flow.first_ts)
            return self._tracer(flow, what, args, ts)
        if isinstance(state, _Pending):
            state.items.append((what, *args, ts))
            if what == "data":
                state.octets += len(args[1])
            protocol = None
            server_data = b"".join(a[2] for a in state.items if a[0] == "data" and a[1] == SERVER)
            if server_data:
                protocol = protocol_by_greeting(server_data)
            if protocol is None and self.port is not None and (server_data or state.octets > GREETING_WAIT or what == "close"):
                protocol = UNKNOWN
            if protocol is None:
                if state.octets > GREETING_WAIT or (server_data and len(server_data) >= 4) or what == "close":
                    flow.consumer_state = _IGNORED  # not a mail conversation
                return None
            tracer = self._start(flow, protocol, state.items[0][-1])
            flow.consumer_state = tracer
            for item in state.items:
                self._apply(flow, item[0], item[1:-1], item[-1])
            return None
        return state

    def _apply(self, flow: Flow, what: str, args: tuple, ts: float) -> None:
        state = flow.consumer_state
        if type(state) is not Tracer:  # STARTTLS was accepted by an earlier item
            state = self._tracer(flow, what, args, ts)
            if state is None:
                return
        tracer = state
        t = ts - tracer.t0  # type: ignore[attr-defined]
        if what == "data":
            if tracer.feed(SIDES[args[0]], args[1], t):
                flow.consumer_state = _StartTls(tracer, t)
        elif what == "gap":
            self.stats.gaps += 1
            if tracer.parsing:
                tracer.session.record(Event(side=SIDES[args[0]], kind=Kind.GAP, missing=int(args[1])), t)
            else:
                tracer.unseen[SIDES[args[0]]] += args[1]
        elif what == "close":
            tracer.finish(SIDES[args[0]], args[1], t)

    def data(self, flow: Flow, side: int, data: bytes, ts: float) -> None:
        state = flow.consumer_state
        if type(state) is Tracer:  # the usual case, straight to the tracer (once per segment)
            t = ts - state.t0  # type: ignore[attr-defined]
            if state.feed(SIDES[side], data, t):
                flow.consumer_state = _StartTls(state, t)
            return
        if self._tracer(flow, "data", (side, data), ts) is not None:
            self._apply(flow, "data", (side, data), ts)

    def gap(self, flow: Flow, side: int, octets: int, ts: float) -> None:
        if self._tracer(flow, "gap", (side, octets), ts) is not None:
            self._apply(flow, "gap", (side, octets), ts)

    def close(self, flow: Flow, side: int, reason: str, ts: float) -> None:
        if self._tracer(flow, "close", (side, reason), ts) is not None:
            self._apply(flow, "close", (side, reason), ts)

    # -- feeding ------------------------------------------------------------------------
    def feed_packets(self, packets: Iterable[tuple[float, int, bytes]]) -> ImportStats:
        stats = self.stats
        segment = self.reassembler.segment
        ts = 0.0
        for ts, linktype, frame in packets:
            stats.packets += 1
            seg = tcp_segment(linktype, frame)
            if seg is None:
                continue
            stats.tcp_segments += 1
            if stats.first_ts is None:
                stats.first_ts = ts
            segment(seg, ts)
        stats.last_ts = ts
        return stats

    def feed_pcap(self, buf) -> ImportStats:
        """A whole classic pcap file in memory (``buf``: bytes or an mmap), the same as
        ``feed_packets(read_packets(...))`` but in one loop: the record header, then Ethernet +
        IPv4 + TCP headers read in place (``packets.ETH_IPV4_TCP``), and one copy per packet,
        its payload.  Other link types and IP headers go through ``tcp_segment``."""
        order, unit = PCAP_MAGICS[bytes(buf[:4])]
        if len(buf) < 24:
            raise CaptureFormatError("truncated pcap header")
        linktype = struct.unpack_from(order + "I", buf, 20)[0] & 0x0FFFFFFF
        record = struct.Struct(order + "IIII").unpack_from
        ethernet = linktype == LINKTYPE_ETHERNET
        headers = ETH_IPV4_TCP.unpack_from
        stats = self.stats
        segment = self.reassembler.segment
        addr = ipv4_text
        new = tuple.__new__
        size, pos, ts, packets, segments = len(buf), 24, 0.0, 0, 0
        while pos < size:
            if pos + 16 > size:
                self.truncated(pos + 16 - size)  # inside a record header
                break
            sec, frac, incl, _orig = record(buf, pos)
            start, pos = pos + 16, pos + 16 + incl
            if pos > size:
                self.truncated(pos - size)  # a capture cut short (tcpdump killed): keep what was complete
                break
            packets += 1
            ts = sec + frac * unit
            seg = None
            if ethernet and incl >= 54:
                etype, vihl, total, frag, proto, src, dst, sport, dport, seq, ack, off, flags = headers(buf, start)
                if etype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x3FFF:
                    end = start + 14 + total if 20 <= total <= incl - 14 else pos  # Ethernet padding; TSO says 0
                    if end - start - 34 >= 20:
                        seg = new(Segment, (addr(src), sport, addr(dst), dport, seq, ack, flags,
                                            buf[start + 34 + (off >> 4) * 4:end]))
                else:
                    seg = tcp_segment(linktype, buf[start:pos])
            else:
                seg = tcp_segment(linktype, buf[start:pos])
            if seg is None:
                continue
            segments += 1
            if stats.first_ts is None:
                stats.first_ts = ts
            segment(seg, ts)
        stats.packets += packets
        stats.tcp_segments += segments
        stats.last_ts = ts
        return stats

    def truncated(self, missing: int) -> None:
        """The file ends inside a packet record (``read_packets``' ``on_truncated``)."""
        self.stats.truncated = max(missing, 1)

    def finish(self) -> ImportStats:
        self.reassembler.finish(self.stats.last_ts, truncated=bool(self.stats.truncated))
        for parked in self._parked.values():
            parked.finish()
        self._parked.clear()
        return self.stats


def import_capture(source: str | Path | BinaryIO, recorder: Recorder, **kw) -> ImportStats:
    """Read a pcap/pcapng file (a path or an open binary stream) into ``recorder``."""
    importer = CaptureImporter(recorder, **kw)
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            if f.read(4) in PCAP_MAGICS and os.fstat(f.fileno()).st_size >= 24:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:  # (pages read as needed)
                    importer.feed_pcap(buf)
            else:
                f.seek(0)
                importer.feed_packets(read_packets(f, importer.truncated))
    else:
        importer.feed_packets(read_packets(source, importer.truncated))
    return importer.finish()
