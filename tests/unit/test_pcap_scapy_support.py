"""scapy in the capture tests, as an implementation independent of mailtrace's own packet code.

* ``TcpScript`` builds captures with scapy (Ethernet, optional 802.1Q tag, IPv4 or IPv6, TCP with
  correct checksums) for the hard cases the reassembler must handle: retransmissions, overlaps,
  segments out of order, a command split mid-line, a reset, IPv6, VLANs.  No hand-packed bytes.
* ``scapy_streams`` reads a capture mailtrace wrote and checks it the way a second tool would:
  every IP and TCP checksum and length valid, each direction's sequence numbers contiguous, and
  returns each TCP conversation's two byte streams as scapy reassembles them.

This module has no tests of its own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Padding, Raw
from scapy.utils import PcapReader, wrpcap

CLIENT, SERVER = 0, 1


@dataclass
class TcpScript:
    """One TCP conversation written segment by segment (sequence numbers kept for you)."""

    client: tuple[str, int] = ("127.0.0.1", 40001)
    server: tuple[str, int] = ("127.0.0.1", 25)
    vlan: int | None = None
    t: float = 1_700_000_000.0
    isn: tuple[int, int] = (1000, 5000)
    packets: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next = [self.isn[CLIENT] + 1, self.isn[SERVER] + 1]

    def frame(self, side: int, flags: str, seq: int, ack: int = 0, data: bytes = b"", dt: float = 0.001):
        src, dst = (self.client, self.server) if side == CLIENT else (self.server, self.client)
        ip = IPv6(src=src[0], dst=dst[0]) if ":" in src[0] else IP(src=src[0], dst=dst[0])
        link = Ether(src="02:00:00:00:00:0%d" % (side + 1), dst="02:00:00:00:00:0%d" % (2 - side))
        if self.vlan is not None:
            link = link / Dot1Q(vlan=self.vlan)
        pkt = link / ip / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq % (1 << 32), ack=ack % (1 << 32))
        if data:
            pkt = pkt / Raw(load=data)
        self.t += dt
        pkt.time = self.t
        return pkt

    def handshake(self) -> "TcpScript":
        c, s = self.isn
        self.packets += [self.frame(CLIENT, "S", c), self.frame(SERVER, "SA", s, c + 1), self.frame(CLIENT, "A", c + 1, s + 1)]
        return self

    def segment(self, side: int, data: bytes, *, at: int | None = None, flags: str = "PA"):
        """A segment from ``side`` carrying ``data`` at stream offset ``at`` (default: next)."""
        start = self.next[side] if at is None else self.isn[side] + 1 + at
        pkt = self.frame(side, flags, start, self.next[1 - side], data)
        self.next[side] = max(self.next[side], start + len(data))
        return pkt

    def say(self, side: int, data: bytes) -> "TcpScript":
        self.packets.append(self.segment(side, data))
        return self

    def dialogue(self, lines) -> "TcpScript":
        for who, data in lines:
            self.say(CLIENT if who == "C" else SERVER, data)
        return self

    def close(self, first: int = CLIENT) -> "TcpScript":
        other = 1 - first
        self.packets.append(self.frame(first, "FA", self.next[first], self.next[other]))
        self.next[first] += 1
        self.packets.append(self.frame(other, "FA", self.next[other], self.next[first]))
        self.next[other] += 1
        self.packets.append(self.frame(first, "A", self.next[first], self.next[other]))
        return self

    def reset(self, side: int) -> "TcpScript":
        self.packets.append(self.frame(side, "R", self.next[side]))
        return self

    def write(self, path) -> None:
        wrpcap(str(path), self.packets)

    def pcap(self) -> bytes:
        buf = _KeptOpen()
        wrpcap(buf, self.packets)
        return buf.getvalue()


class _KeptOpen(io.BytesIO):
    def close(self) -> None:  # wrpcap closes what it wrote to; the bytes are still wanted
        pass


def _payload(tcp) -> bytes:
    data = bytes(tcp.payload)
    pad = tcp.getlayer(Padding)
    return data[: len(data) - len(bytes(pad))] if pad is not None else data


def scapy_streams(path) -> list[tuple[bytes, bytes]]:
    """(client bytes, server bytes) of each TCP conversation of a capture, in order of first
    packet, as scapy decodes it; asserts that checksums, lengths and sequence numbers hold."""
    convs: dict = {}
    order: list = []
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            tcp = pkt.getlayer(TCP)
            assert tcp is not None, pkt.summary()
            ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
            if isinstance(ip, IP):
                assert ip.len == len(bytes(ip)) - len(bytes(pkt.getlayer(Padding) or b"")), pkt.summary()
                assert ip.chksum == IP(bytes(_without_checksums(ip))).chksum, f"IP checksum of {pkt.summary()}"
            else:
                assert ip.plen == len(bytes(ip.payload)), pkt.summary()
            assert tcp.chksum == _tcp_checksum(pkt), f"TCP checksum of {pkt.summary()}"
            a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            key = frozenset((a, b))
            if key not in convs:
                if "S" not in tcp.flags or "A" in tcp.flags:
                    raise AssertionError(f"a conversation that does not start with a SYN: {pkt.summary()}")
                convs[key] = {"client": a, "next": {}, "data": {a: b"", b: b""}}
                order.append(key)
            conv = convs[key]
            data = _payload(tcp)
            nxt = conv["next"].get(a)
            if "S" in tcp.flags:
                assert nxt is None, "a second SYN in one conversation"
                conv["next"][a] = tcp.seq + 1
                continue
            assert nxt == tcp.seq, f"sequence number {tcp.seq}, expected {nxt}: {pkt.summary()}"
            conv["data"][a] += data
            conv["next"][a] = (tcp.seq + len(data) + (1 if "F" in tcp.flags else 0)) % (1 << 32)
    out = []
    for key in order:
        conv = convs[key]
        client = conv["client"]
        server = next(iter(key - {client}))
        out.append((conv["data"][client], conv["data"][server]))
    return out


def _without_checksums(ip):
    copy = ip.copy()
    del copy.chksum
    if copy.haslayer(TCP):
        del copy[TCP].chksum
    return copy


def _tcp_checksum(pkt) -> int:
    """The TCP checksum scapy computes for this segment (pseudo-header included)."""
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    rebuilt = ip.__class__(bytes(_without_checksums(ip)))
    return rebuilt[TCP].chksum
