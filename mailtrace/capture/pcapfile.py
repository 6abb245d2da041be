"""pcap and pcapng, read and written by hand: the formats are small and this is much faster
than building scapy packets.

* pcap: https://www.tcpdump.org/manpages/pcap-savefile.5.html (global header, then a record
  header ``ts_sec ts_usec incl_len orig_len`` before each packet);
* pcapng: RFC draft-ietf-opsawg-pcapng (Section Header, Interface Description, Enhanced Packet
  blocks; ``opt_comment`` carries an annotation with a packet).

Reading is a generator over ``(timestamp, linktype, frame)``: the file is never loaded whole.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Callable, Iterator

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # a bare IPv4/IPv6 packet
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LOOP = 108  # OpenBSD loopback
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
SNAPLEN = 262144
OPT_COMMENT = 1
OPT_ENDOFOPT = 0


class CaptureFormatError(ValueError):
    """Not a pcap/pcapng file, or a damaged one."""


def sniff_format(head: bytes) -> str | None:
    """'pcap', 'pcapng' or None from the first four bytes."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    return None


#: Called with the octets missing from the last record when a file ends inside one (a capture
#: cut short: tcpdump killed, a copy interrupted); every complete packet before it was read.
OnTruncated = Callable[[int], None]


def read_packets(f: BinaryIO, on_truncated: OnTruncated | None = None) -> Iterator[tuple[float, int, bytes]]:
    head = f.read(4)
    kind = sniff_format(head)
    cut = on_truncated or (lambda missing: None)
    if kind == "pcap":
        yield from _read_pcap(f, head, cut)
    elif kind == "pcapng":
        yield from _read_pcapng(f, head, cut)
    else:
        raise CaptureFormatError("not a pcap or pcapng capture (unknown magic number)")


def _read_pcap(f: BinaryIO, magic: bytes, cut: OnTruncated) -> Iterator[tuple[float, int, bytes]]:
    order, unit = PCAP_MAGICS[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise CaptureFormatError("truncated pcap header")
    linktype = struct.unpack(order + "HHiIII", rest)[5] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    read = f.read
    while True:
        hdr = read(16)
        if len(hdr) < 16:
            if hdr:
                cut(16 - len(hdr))  # inside a record header: at least the rest of it is missing
            return
        sec, frac, incl, _orig = rec.unpack(hdr)
        data = read(incl)
        if len(data) < incl:
            cut(incl - len(data))  # a capture cut short (tcpdump killed): keep what was complete
            return
        yield sec + frac * unit, linktype, data


def _read_pcapng(f: BinaryIO, first: bytes, cut: OnTruncated) -> Iterator[tuple[float, int, bytes]]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    head = first + f.read(8)
    while True:
        if len(head) < 12:
            if head:
                cut(12 - len(head))  # inside a block header
            return
        btype = struct.unpack(order + "I", head[:4])[0]
        if btype == PCAPNG_SHB or head[:4] == b"\x0a\x0d\x0d\x0a":
            bom = head[8:12]
            order = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
            if struct.unpack(order + "I", bom)[0] != BYTE_ORDER_MAGIC:
                raise CaptureFormatError("bad pcapng byte-order magic")
            interfaces = []
        blen = struct.unpack(order + "I", head[4:8])[0]
        if blen < 12 or blen % 4:
            raise CaptureFormatError(f"bad pcapng block length {blen}")
        body = head[8:] + f.read(blen - 12)
        if len(body) < blen - 8:
            cut(blen - 8 - len(body))  # inside a block
            return
        body = body[: blen - 12]
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack(order + "H", body[:2])[0]
            interfaces.append((linktype, _if_tsresol(body[8:], order)))
        elif btype == 6:  # Enhanced Packet Block
            iface, hi, lo, cap, _orig = struct.unpack(order + "IIIII", body[:20])
            if iface < len(interfaces):
                linktype, unit = interfaces[iface]
                yield ((hi << 32) | lo) * unit, linktype, body[20:20 + cap]
        elif btype == 3 and interfaces:  # Simple Packet Block
            orig = struct.unpack(order + "I", body[:4])[0]
            yield 0.0, interfaces[0][0], body[4:4 + orig]
        head = f.read(12)


def _if_tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack(order + "HH", options[pos:pos + 4])
        if code == OPT_ENDOFOPT:
            break
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        pos += 4 + length + (-length % 4)
    return 1e-6


class PcapWriter:
    """Writes Ethernet frames to a classic pcap (``pcapng=False``) or a pcapng file with comments."""

    def __init__(self, f: BinaryIO, pcapng: bool = False) -> None:
        self.f = f
        self.pcapng = pcapng
        if pcapng:
            appl = _option(4, "mailtrace".encode())  # shb_userappl
            body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + appl + _END
            self._block(PCAPNG_SHB, body)
            self._block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + _option(9, b"\x06") + _END)
        else:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def _block(self, btype: int, body: bytes) -> None:
        total = 12 + len(body)
        self.f.write(struct.pack("<II", btype, total) + body + struct.pack("<I", total))

    def write(self, ts: float, frame: bytes, comment: str = "") -> None:
        usec = int(round(ts * 1e6))
        if self.pcapng:
            opts = (comment_options(comment) + _END) if comment else b""
            pad = b"\x00" * (-len(frame) % 4)
            self._block(6, struct.pack("<IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(frame), len(frame))
                        + frame + pad + opts)
        else:
            self.f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)

    def flush(self) -> None:
        self.f.flush()


_END = struct.pack("<HH", OPT_ENDOFOPT, 0)


MAX_OPTION = 0xFFFF  # an option's length is 16 bits (pcapng, IETF draft-ietf-opsawg-pcapng §3.5)


def comment_options(text: str) -> bytes:
    """``opt_comment`` options for ``text``: one when it fits; else several, each starting
    "[i/n] " (an annotation never lost to the 16-bit length: issue #11's struct.error)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_OPTION:
        return _option(OPT_COMMENT, data)
    room = MAX_OPTION - 32  # for the "[i/n] " prefix
    pieces, pos = [], 0
    while pos < len(data):
        end = min(len(data), pos + room)
        while end < len(data) and end > pos and (data[end] & 0xC0) == 0x80:  # not inside a UTF-8 character
            end -= 1
        pieces.append(data[pos:end])
        pos = end
    return b"".join(_option(OPT_COMMENT, f"[{i}/{len(pieces)}] ".encode() + piece)
                    for i, piece in enumerate(pieces, start=1))


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)
