"""TCP reassembly for captures: each conversation's two byte streams, in order.

Sequence numbers (RFC 9293 §3.4) are tracked per direction and unwrapped past 2**32.  A segment
at the expected number is delivered; one beyond it waits; one already delivered (a
retransmission, or a duplicate from capturing on both ends) is dropped, and an overlap is
trimmed.  A hole becomes a *gap* when it can no longer be filled: the receiver acknowledged
past it (the data reached the peer but not the capture), or the stream ended (FIN, RST, end of
capture).  A capture that starts in the middle of a connection starts each stream at its first
segment.

The consumer gets calls, in capture order: ``open(flow, ts)``, ``data(flow, side, bytes, ts)``,
``gap(flow, side, octets, ts)``, ``close(flow, side, reason, ts)`` where ``side`` is 0 for the
client and 1 for the server.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from mailtrace.capture.packets import ACK, FIN, RST, SYN, Segment
from mailtrace.knowledge import because

CLIENT, SERVER = 0, 1
MOD = 1 << 32
HALF = 1 << 31
MAX_PENDING = 4 * 1024 * 1024  # octets held out of order per stream before the hole counts as a gap
MAX_CLOSED = 10_000  # finished conversations remembered (to drop their late ACKs) before forgetting the oldest


_FIN_REASONS: dict[int, object] = {}


def _fin_reason(side: int):
    """The reason of a conversation its ``side`` ended with a FIN: worded once (a Reason is frozen)."""
    reason = _FIN_REASONS.get(side)
    if reason is None:
        reason = _FIN_REASONS[side] = because("client-fin" if side == CLIENT else "server-fin")
    return reason


class Consumer(Protocol):
    def open(self, flow: "Flow", ts: float) -> None: ...
    def data(self, flow: "Flow", side: int, data: bytes, ts: float) -> None: ...
    def gap(self, flow: "Flow", side: int, octets: int, ts: float) -> None: ...
    def close(self, flow: "Flow", side: int, reason: str, ts: float) -> None: ...


class Stream:
    __slots__ = ("next", "pending", "pending_octets", "fin", "done", "dropped")

    def __init__(self) -> None:
        self.next: int | None = None  # next expected sequence number (unwrapped)
        self.pending: dict[int, bytes] = {}
        self.pending_octets = 0
        self.fin: int | None = None  # sequence number of the FIN
        self.done = False
        self.dropped = 0  # retransmitted octets dropped

    def unwrap(self, seq: int) -> int:
        if self.next is None:
            return seq
        base = self.next - (self.next % MOD)
        value = base + seq
        if value - self.next > HALF:
            value -= MOD
        elif self.next - value > HALF:
            value += MOD
        return value


class Flow:
    """One TCP conversation. ``addr[CLIENT]``/``addr[SERVER]`` are (ip, port)."""

    __slots__ = ("addr", "streams", "syn_seen", "midstream", "closed", "consumer_state", "first_ts", "ended_by", "key")

    def __init__(self, client: tuple[str, int], server: tuple[str, int], syn_seen: bool, ts: float) -> None:
        self.addr = (client, server)
        self.streams = (Stream(), Stream())
        self.syn_seen = syn_seen
        self.midstream = not syn_seen
        self.closed = False
        self.consumer_state: object = None  # whatever the consumer keeps per flow
        self.first_ts = ts
        self.ended_by: int | None = None
        self.key: tuple = ()


class Reassembler:
    def __init__(self, consumer: Consumer, server_side=None) -> None:
        """``server_side(seg) -> bool | None``: does ``seg`` come from the server? Used when
        the SYN was not captured (None: guess from the ports)."""
        self.consumer = consumer
        self.flows: dict[tuple, Flow] = {}
        self.server_side = server_side
        self._closed: deque = deque()

    def segment(self, seg: Segment, ts: float) -> None:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if a < b else (b, a)
        flow = self.flows.get(key)
        flags = seg.flags
        if flow is not None and flow.closed:
            if not (flags & SYN) or flags & ACK:
                return  # late packets of a finished conversation
            del self.flows[key]
            flow = None
        if flow is None:
            if flags & RST:
                return
            if flags & SYN:
                client, server = (a, b) if not flags & ACK else (b, a)
                flow = Flow(client, server, True, ts)
            else:
                from_server = self.server_side(seg) if self.server_side else None
                if from_server is None:
                    from_server = seg.sport < seg.dport
                client, server = (b, a) if from_server else (a, b)
                flow = Flow(client, server, False, ts)
            flow.key = key
            self.flows[key] = flow
            self.consumer.open(flow, ts)
        side = CLIENT if a == flow.addr[CLIENT] else SERVER
        stream, peer = flow.streams[side], flow.streams[1 - side]
        if flags & SYN:
            if stream.next is None:
                stream.next = seg.seq + 1
            return
        if flags & RST:
            self._end(flow, side, "reset (RST)", ts)
            return
        payload = seg.payload
        if stream.next is None:
            stream.next = seg.seq  # capture started mid-connection
        seq = stream.unwrap(seg.seq)
        if payload:
            self._add(flow, side, stream, seq, payload, ts)
        if flags & FIN and stream.fin is None:
            stream.fin = seq + len(payload)
        if flags & ACK and peer.next is not None:
            acked = peer.unwrap(seg.ack)
            if acked > peer.next:  # the peer got bytes the capture missed?
                limit = min(peer.pending) if peer.pending else peer.fin
                if limit is not None and limit > peer.next:
                    self._fill(flow, 1 - side, peer, min(acked, limit), ts)
                    self._check_fin(flow, 1 - side, peer, ts)
        self._check_fin(flow, side, stream, ts)

    def _add(self, flow: Flow, side: int, stream: Stream, seq: int, payload: bytes, ts: float) -> None:
        end = seq + len(payload)
        if end <= stream.next:
            stream.dropped += len(payload)
            return
        if seq < stream.next:
            payload = payload[stream.next - seq:]
            seq = stream.next
        if seq == stream.next:
            stream.next = end
            self.consumer.data(flow, side, payload, ts)
            if stream.pending:
                self._drain(flow, side, stream, ts)
            return
        old = stream.pending.get(seq)
        if old is None or len(old) < len(payload):
            stream.pending[seq] = payload
            stream.pending_octets += len(payload) - (len(old) if old else 0)
        if stream.pending_octets > MAX_PENDING:
            self._fill(flow, side, stream, min(stream.pending), ts)

    def _drain(self, flow: Flow, side: int, stream: Stream, ts: float) -> None:
        pending = stream.pending
        while pending:
            first = min(pending)
            if first > stream.next:
                return
            data = pending.pop(first)
            stream.pending_octets -= len(data)
            end = first + len(data)
            if end <= stream.next:
                continue
            self.consumer.data(flow, side, data[stream.next - first:], ts)
            stream.next = end

    def _fill(self, flow: Flow, side: int, stream: Stream, upto: int, ts: float) -> None:
        """Bytes [next, upto) will never come: report the gap, then deliver what follows."""
        if upto > stream.next:
            self.consumer.gap(flow, side, upto - stream.next, ts)
            stream.next = upto
        self._drain(flow, side, stream, ts)

    def _check_fin(self, flow: Flow, side: int, stream: Stream, ts: float) -> None:
        if stream.fin is not None and not stream.done and stream.next >= stream.fin:
            stream.done = True
            if flow.ended_by is None:
                flow.ended_by = side
            if flow.streams[1 - side].done:
                self._end(flow, flow.ended_by, "", ts)

    def _end(self, flow: Flow, side: int, reason: str, ts: float) -> None:
        if flow.closed:
            return
        for s, stream in enumerate(flow.streams):
            if stream.pending:
                self._fill(flow, s, stream, min(stream.pending), ts)
        flow.closed = True
        self._closed.append(flow)
        if len(self._closed) > MAX_CLOSED:
            old = self._closed.popleft()
            if self.flows.get(old.key) is old:
                del self.flows[old.key]
        who = flow.ended_by if flow.ended_by is not None else side
        if not reason:
            reason = _fin_reason(who)
        self.consumer.close(flow, who, reason, ts)

    def finish(self, ts: float, truncated: bool = False) -> None:
        """End of the capture: every conversation still open ends here (``truncated``: the file
        was cut inside a packet, so they may have gone on in packets that were lost)."""
        for flow in list(self.flows.values()):
            if not flow.closed:
                side = flow.ended_by if flow.ended_by is not None else CLIENT
                reason = "capture ended" + (" (half closed)" if flow.ended_by is not None else "")
                self._end(flow, side, because("capture-truncated") if truncated else reason, ts)
        self.flows.clear()
