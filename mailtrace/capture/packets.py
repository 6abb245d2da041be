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


def _addr(packed: bytes) -> str:
    text = _IPV4_ADDR.get(packed)
    if text is None:
        text = str(ipaddress.ip_address(packed))
        if len(_IPV4_ADDR) < 65536:
            _IPV4_ADDR[packed] = text
    return text


def ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame (None for anything else)."""
    if linktype == pf.LINKTYPE_ETHERNET:
        etype = frame[12:14]
        off = 14
        while etype in (b"\x81\x00", b"\x88\xa8"):  # 802.1Q / 802.1ad VLAN tags
            etype = frame[off + 2:off + 4]
            off += 4
        return frame[off:] if etype in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in (pf.LINKTYPE_RAW, pf.LINKTYPE_IPV4, pf.LINKTYPE_IPV6):
        return frame
    if linktype == pf.LINKTYPE_LINUX_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == pf.LINKTYPE_LINUX_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in (pf.LINKTYPE_NULL, pf.LINKTYPE_LOOP):
        return frame[4:]
    return None


def tcp_segment(linktype: int, frame: bytes) -> Segment | None:
    ip = ip_payload(linktype, frame)
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if len(ip) < ihl + 20 or ip[9] != 6:
            return None
        if struct.unpack("!H", ip[6:8])[0] & 0x3FFF:  # a fragment (MF or offset): not reassembled
            return None
        total = struct.unpack("!H", ip[2:4])[0]
        end = total if ihl <= total <= len(ip) else len(ip)  # trims Ethernet padding; TSO captures say 0
        src, dst = _addr(ip[12:16]), _addr(ip[16:20])
        tcp = ip[ihl:end]
    elif version == 6:
        if len(ip) < 60 or ip[6] != 6:
            return None
        plen = struct.unpack("!H", ip[4:6])[0]
        end = 40 + plen if 0 < plen <= len(ip) - 40 else len(ip)
        src, dst = _addr(ip[8:24]), _addr(ip[24:40])
        tcp = ip[40:end]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, off, flags = _TCP.unpack_from(tcp)
    return Segment(src, sport, dst, dport, seq, ack, flags, tcp[(off >> 4) * 4:])
