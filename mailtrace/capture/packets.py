"""Frames to TCP segments: just enough link-layer, IPv4 (RFC 791 §3.1), IPv6 (RFC 8200 §3) and
TCP (RFC 9293 §3.1) header parsing to reassemble conversations, written with ``struct`` for
speed (this runs once per packet of captures with millions of them)."""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from mailtrace.capture import pcapfile as pf

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_TCP = struct.Struct("!HHIIBB")
_IPV4_ADDR = {}  # packed address -> text (a capture has few addresses)


class Segment(NamedTuple):
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes


def ipv4_text(packed: bytes) -> str:
    """The text of a packed IPv4 address (cached: a capture has few addresses)."""
    return _IPV4_ADDR.get(packed) or _addr(packed)


def _addr(packed: bytes) -> str:
    text = _IPV4_ADDR.get(packed)
    if text is None:
        text = str(ipaddress.ip_address(packed))
        if len(_IPV4_ADDR) < 65536:
            _IPV4_ADDR[packed] = text
    return text


_ETHERTYPE = struct.Struct("!H")
_IPV4_LEN_FRAG = struct.Struct("!H2xH")  # total length, (identification), flags + fragment offset
_IP_TYPES = (0x0800, 0x86DD)


def ip_offset(linktype: int, frame: bytes) -> int:
    """Where the IP packet starts inside a link-layer frame (-1: not IP)."""
    if linktype == pf.LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return -1
        etype = _ETHERTYPE.unpack_from(frame, 12)[0]
        off = 14
        while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:  # 802.1Q / 802.1ad VLAN tags
            etype = _ETHERTYPE.unpack_from(frame, off + 2)[0]
            off += 4
        return off if etype in _IP_TYPES else -1
    if linktype in (pf.LINKTYPE_RAW, pf.LINKTYPE_IPV4, pf.LINKTYPE_IPV6):
        return 0
    if linktype == pf.LINKTYPE_LINUX_SLL:
        return 16 if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else -1
    if linktype == pf.LINKTYPE_LINUX_SLL2:
        return 20 if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else -1
    if linktype in (pf.LINKTYPE_NULL, pf.LINKTYPE_LOOP):
        return 4
    return -1


def ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame (None for anything else)."""
    off = ip_offset(linktype, frame)
    return frame[off:] if off >= 0 else None


# Ethernet II + IPv4 without options + the TCP header's first 14 octets, in one read: the frames
# of nearly every capture of a lab (type, version/IHL, total length, flags/fragment, protocol,
# addresses; ports, sequence, acknowledgement, data offset, flags)
ETH_IPV4_TCP = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBB")
_segment = tuple.__new__  # Segment(...) without the generated __new__'s Python frame


def tcp_segment(linktype: int, frame: bytes) -> Segment | None:
    """The TCP segment of a frame, read in place (offsets into ``frame``: one copy, the payload)."""
    if linktype == pf.LINKTYPE_ETHERNET and len(frame) >= 54:
        etype, vihl, total, frag, proto, src, dst, sport, dport, seq, ack, off, flags = ETH_IPV4_TCP.unpack_from(frame)
        if etype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x3FFF:
            end = 14 + total if 20 <= total <= len(frame) - 14 else len(frame)  # Ethernet padding; TSO says 0
            if end - 34 >= 20:
                return _segment(Segment, (ipv4_text(src), sport, ipv4_text(dst),
                                          dport, seq, ack, flags, frame[34 + (off >> 4) * 4:end]))
    ip = ip_offset(linktype, frame)
    if ip < 0 or ip >= len(frame):
        return None
    version = frame[ip] >> 4
    if version == 4:
        ihl = (frame[ip] & 0x0F) * 4
        if len(frame) < ip + ihl + 20 or frame[ip + 9] != 6:
            return None
        total, frag = _IPV4_LEN_FRAG.unpack_from(frame, ip + 2)
        if frag & 0x3FFF:  # a fragment (MF or offset): not reassembled
            return None
        end = ip + total if ihl <= total <= len(frame) - ip else len(frame)  # trims Ethernet padding; TSO captures say 0
        src, dst = _addr(frame[ip + 12:ip + 16]), _addr(frame[ip + 16:ip + 20])
        tcp = ip + ihl
    elif version == 6:
        if len(frame) - ip < 60 or frame[ip + 6] != 6:
            return None
        plen = _ETHERTYPE.unpack_from(frame, ip + 4)[0]
        end = ip + 40 + plen if 0 < plen <= len(frame) - ip - 40 else len(frame)
        src, dst = _addr(frame[ip + 8:ip + 24]), _addr(frame[ip + 24:ip + 40])
        tcp = ip + 40
    else:
        return None
    if end - tcp < 20:
        return None
    sport, dport, seq, ack, off, flags = _TCP.unpack_from(frame, tcp)
    return Segment(src, sport, dst, dport, seq, ack, flags, frame[tcp + (off >> 4) * 4:end])
