"""The TCP segments under the dialogue: ``mailtrace show capture.pcap --packets``.

A student sees SMTP as lines and TCP as segments; this view puts them side by side.  Each
packet is dissected by scapy (an implementation independent of mailtrace's own reader), and
for each TCP connection that carries a mail session it lists, segment by segment: the time,
the direction, the flags (``S``, ``SA``, ``A``, ``PA``, ``FA``, ``R``), the relative sequence
and acknowledgement numbers (RFC 9293 §3.4; 0 is the SYN, 1 the first octet of data, as
Wireshark counts), the payload length, and the protocol lines the segment carries or continues.

The text of those lines comes from the transcript mailtrace rebuilt from the same file
(``importer``), so a password is hidden here exactly as in ``mailtrace show`` and both views
agree on which octets belong to which command.  Segments are marked when they repeat octets
already seen (a retransmission), arrive after later ones (out of order), or leave octets
unseen before them.  Words come from ``knowledge/common.toml`` ``[packets]`` (English, Spanish).

scapy is imported here, and only here and in live capture: ``mailtrace --help`` and the
servers never load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from mailtrace import knowledge
from mailtrace.transcript.event import Kind, Peer, Side

PAYLOAD_KINDS = (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL)
MAX_LINES = 8  # protocol lines listed per segment; a long DATA segment says how many more
MOD = 1 << 32


def text(key: str, lang: str = "en", **fields) -> str:
    """A label of this view, from ``knowledge/common.toml`` ``[packets.KEY]``."""
    return knowledge.phrase("packets", key, lang, **fields)


@dataclass
class Row:
    """One TCP segment as the student sees it."""

    t: float  # seconds since the connection's first packet
    side: int  # 0 client -> server, 1 server -> client
    flags: str  # scapy's letters: S, SA, A, PA, FA, R, ...
    seq: int  # relative to the sender's initial sequence number
    ack: int | None  # relative to the receiver's; None when the ACK flag is off
    length: int  # octets of payload
    lines: list[str] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)


@dataclass
class _Direction:
    isn: int | None = None  # the SYN's sequence number (its relative number is 0)
    base: int | None = None  # unwrapped sequence number of the first octet of data
    last: int | None = None  # last unwrapped number, for unwrapping past 2**32
    seen: list = field(default_factory=list)  # merged [start, end) offsets already seen
    high: int = 0  # one past the highest offset seen
    fin: bool = False

    def unwrap(self, seq: int) -> int:
        if self.last is None:
            self.last = seq
            return seq
        value = self.last - (self.last % MOD) + seq
        if value - self.last > MOD // 2:
            value -= MOD
        elif self.last - value > MOD // 2:
            value += MOD
        self.last = max(self.last, value)
        return value

    def covered(self, start: int, end: int) -> int:
        """How many octets of [start, end) were seen before."""
        return sum(max(0, min(end, e) - max(start, s)) for s, e in self.seen)

    def add(self, start: int, end: int) -> None:
        spans = sorted(self.seen + [(start, end)])
        merged = [spans[0]]
        for s, e in spans[1:]:
            if s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.seen = merged
        self.high = max(self.high, end)


@dataclass
class Connection:
    client: tuple[str, int]
    server: tuple[str, int]
    protocol: str
    first_ts: float
    rows: list[Row] = field(default_factory=list)
    spans: tuple[list, list] = field(default_factory=lambda: ([], []))  # per side: (start, end, event)
    dirs: tuple[_Direction, _Direction] = field(default_factory=lambda: (_Direction(), _Direction()))
    handshake: int = 0  # how many of the three handshake segments were seen


def _addr(text_: str) -> tuple[str, int] | None:
    host, _, port = text_.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def _sessions(path: Path, *, port, protocol, show_secrets: bool,
              lang: str) -> tuple[dict[tuple, Connection], dict[tuple, Connection]]:
    """mailtrace's own transcript of the capture: which connections are mail, and which octets
    of each stream are which event (with secrets hidden as ``mailtrace show`` hides them).
    Second: the decrypted rest of intercepted STARTTLS sessions (an export's next conversation
    from that client host to that server, see ``importer``), by (client host, server), their
    own addresses still unknown."""
    from mailtrace.capture.importer import import_capture
    from mailtrace.proxy.credentials import CredentialDecoder
    from mailtrace.proxy.safe import escape_controls
    from mailtrace.transcript.recorder import MemorySink, Recorder

    mem = MemorySink()
    import_capture(path, Recorder([mem]), port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
    conns: dict[tuple, Connection] = {}
    tunnels: dict[tuple, Connection] = {}
    by_session: dict[str, tuple[Connection, CredentialDecoder, list[int]]] = {}
    for event in mem.events:
        if event.kind is Kind.OPEN:
            peer = event.peer or Peer()
            client, server = _addr(peer.client), _addr(peer.server)
            if client is None or server is None:
                continue
            conn = Connection(client, server, event.protocol, peer.started)
            conns[(client, server)] = conn
            by_session[event.session] = (conn, CredentialDecoder(event.protocol, show_secrets, lang), [0, 0])
            continue
        entry = by_session.get(event.session)
        if entry is None:
            continue
        conn, decoder, offset = entry
        if event.kind is Kind.TLS and event.tls and event.tls.how == "starttls" and event.tls.intercepted:
            tunnel = Connection(conn.client, conn.server, conn.protocol, conn.first_ts)
            tunnels[(conn.client[0], conn.server)] = tunnel
            by_session[event.session] = (tunnel, decoder, [0, 0])
            continue
        side = 0 if event.side is Side.CLIENT else 1
        if event.kind is Kind.GAP:
            offset[side] += event.missing
        elif event.kind in PAYLOAD_KINDS and event.side in (Side.CLIENT, Side.SERVER):
            shown = escape_controls(decoder.feed(event))
            conn.spans[side].append((offset[side], offset[side] + event.octets, shown, event.raw))
            offset[side] += event.octets
    return conns, tunnels


def _flags(tcp) -> str:
    return str(tcp.flags)


def _payload(tcp) -> bytes:
    """The segment's data, without the Ethernet padding of a short frame."""
    from scapy.packet import Padding

    data = bytes(tcp.payload)
    pad = tcp.getlayer(Padding)
    return data[: len(data) - len(bytes(pad))] if pad is not None else data


def _line_pieces(conn: Connection, side: int, start: int, end: int, show_secrets: bool, lang: str) -> list[str]:
    """The protocol lines (or parts of lines) carried by octets [start, end) of one stream."""
    from mailtrace.proxy.safe import _bytes as inert  # control bytes written out, as the text view does

    pieces: list[str] = []
    covered = 0
    for s, e, event, raw in conn.spans[side]:
        if e <= start or s >= end:
            continue
        lo, hi = max(start, s), min(end, e)
        covered += hi - lo
        if event.redacted is not None and not show_secrets:
            whole = lo == s and hi == e
            pieces.append(("" if lo == s else "…") + event.text(False) + ("" if whole else "  " + text("part", lang)))
            continue
        part = raw[lo - s:hi - s]
        if not part:  # a huge message whose raw bytes were cut short in the transcript
            pieces.append("…")
            continue
        at_line_start = lo == s or raw[lo - s - 1:lo - s] == b"\n"
        lines = part.split(b"\n")
        ends_line = lines[-1] == b""
        if ends_line:
            lines.pop()
        for i, line in enumerate(lines):
            shown = inert(line.rstrip(b"\r")).decode("utf-8", errors="backslashreplace")
            prefix = "…" if i == 0 and not at_line_start else ""
            suffix = "…" if i == len(lines) - 1 and not ends_line else ""
            pieces.append(prefix + shown + suffix if prefix or shown or suffix else text("empty-line", lang))
    if covered < end - start:
        pieces.append(text("not-dialogue", lang, octets=end - start - covered))
    return pieces


def read_connections(path: str | Path, *, port: int | None = None, protocol: str | None = None,
                     show_secrets: bool = False, lang: str = "en") -> list[Connection]:
    """Every mail connection of a capture, each with its segments as rows."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether  # noqa: F401  (registers the link layers the reader dissects)
    from scapy.utils import PcapReader

    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # a cut-short capture is normal (tcpdump killed)
    path = Path(path)
    conns, tunnels = _sessions(path, port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            tcp = pkt.getlayer(TCP)
            if tcp is None:
                continue
            ip = pkt.getlayer(IP)
            if ip is not None:
                if ip.flags.MF or ip.frag:
                    continue  # an IP fragment: the importer does not reassemble these either
            else:
                ip = pkt.getlayer(IPv6)
                if ip is None:
                    continue
            a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            conn = conns.get((a, b)) or conns.get((b, a))
            if conn is None and _flags(tcp) == "S" and (a[0], b) in tunnels:
                conn = tunnels.pop((a[0], b))  # the SYN of a decrypted STARTTLS tunnel
                conn.client, conn.server = a, b
                conns[(a, b)] = conn
            if conn is None:
                continue
            side = 0 if a == conn.client else 1
            if not conn.rows:
                conn.first_ts = float(pkt.time)
            _add_row(conn, side, float(pkt.time), tcp, _payload(tcp), show_secrets, lang)
    return sorted(conns.values(), key=lambda c: c.first_ts)


def _add_row(conn: Connection, side: int, ts: float, tcp, payload: bytes, show_secrets: bool, lang: str) -> None:
    flags = _flags(tcp)
    me, peer = conn.dirs[side], conn.dirs[1 - side]
    seq = me.unwrap(tcp.seq)
    if "S" in flags and me.isn is None:
        me.isn = seq
        me.base = seq + 1
    if me.base is None:  # the capture started after the SYN: count from the first segment seen
        me.base = seq
        me.isn = seq - 1
    ack = None
    if "A" in flags and peer.isn is not None:
        ack = peer.unwrap(tcp.ack) - peer.isn
    row = Row(ts - conn.first_ts, side, flags, seq - me.isn, ack, len(payload))
    who = "client" if side == 0 else "server"
    if "R" in flags:
        row.marks.append(text("rst-" + who, lang))
    elif flags == "S":
        row.marks.append(text("syn", lang))
        conn.handshake = 1
    elif "S" in flags and "A" in flags:
        row.marks.append(text("syn-ack", lang))
        conn.handshake = max(conn.handshake, 2)
    elif conn.handshake == 2 and side == 0 and not payload and flags == "A":
        row.marks.append(text("handshake-done", lang))
        conn.handshake = 3
    if payload:
        start = seq - me.base
        end = start + len(payload)
        seen = me.covered(start, end)
        if seen == len(payload):
            row.marks.append(text("retransmission", lang))
        elif start > me.high:
            row.marks.append(text("missing-before", lang, octets=start - me.high))
        elif start < me.high and seen:
            row.marks.append(text("overlap", lang, octets=seen))
        elif start < me.high:
            row.marks.append(text("out-of-order", lang))
        me.add(start, end)
        row.lines = _line_pieces(conn, side, start, end, show_secrets, lang)
    if "F" in flags and not me.fin:
        me.fin = True
        row.marks.append(text("fin-" + who, lang))
    elif flags == "A" and not payload and me.fin and peer.fin and conn.handshake != 2:
        row.marks.append(text("last-ack", lang))
    conn.rows.append(row)


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render(connections: list[Connection], lang: str = "en") -> Iterator[str]:
    """The view as lines of plain text (no colour: it is read next to ``tcpdump -r``)."""
    for n, conn in enumerate(connections, 1):
        data = sum(1 for r in conn.rows if r.length)
        yield text("connection", lang, n=n, client=_fmt(conn.client), server=_fmt(conn.server),
                   protocol=conn.protocol.upper(), segments=len(conn.rows), data=data)
        head = (f"{text('col-time', lang):>10}  {text('col-dir', lang):<4} {text('col-flags', lang):<5} "
                f"{text('col-seq', lang):>7} {text('col-ack', lang):>7} {text('col-len', lang):>6}  "
                f"{text('col-carries', lang)}")
        yield head
        indent = " " * 46
        arrows = ("C→S", "S→C")
        for row in conn.rows:
            ack = "" if row.ack is None else str(row.ack)
            first = f"{row.t:10.6f}  {arrows[row.side]:<4} {row.flags:<5} {row.seq:>7} {ack:>7} {row.length:>6}  "
            items = row.lines[:MAX_LINES] if len(row.lines) > MAX_LINES + 1 else row.lines[:]
            if len(row.lines) > MAX_LINES + 1:
                items.append(text("more-lines", lang, n=len(row.lines) - MAX_LINES))
            items += [f"[{m}]" for m in row.marks]
            yield (first + (items[0] if items else "")).rstrip()
            for item in items[1:]:
                yield indent + item
        yield ""
