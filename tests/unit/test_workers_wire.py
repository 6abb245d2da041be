"""The events stream between a lab worker and its parent (mailtrace/servers/workers.py): every
event, with every kind of typed fact, arrives equal to what the worker recorded."""

import pickle

from mailtrace.servers.workers import HEADER, dump_batch
from mailtrace.transcript.event import Args, Clause, Event, Kind, MessageRef, Note, Peer, Reason, Side, Tls
from mailtrace.transcript.links import Action


def test_a_batch_round_trips_every_field():
    events = [
        Event(side=Side.NONE, kind=Kind.OPEN, peer=Peer(client="127.0.0.1:4000", server="127.0.0.1:25", mode="lab",
                                                        started=1700000000.5)),
        Event(side=Side.NONE, kind=Kind.TLS, tls=Tls(how="implicit")),
        Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"MAIL FROM:<a@b> SIZE=12\r\n", verb="MAIL",
              args=Args(reverse_path="a@b", params=(("SIZE", "12"),)), notes=(Note("bare-lf", "at 3"),), pipelined=True),
        Event(side=Side.CLIENT, kind=Kind.COMMAND, raw=b"PASS secret\r\n", verb="PASS", redacted=b"PASS ***\r\n"),
        Event(side=Side.SERVER, kind=Kind.REPLY, raw=b"250 OK\r\n", verb="DATA", code="250", user="alice",
              messages=(MessageRef(Action("delivered"), "alice", "INBOX", 7, "1700.M1P2.lab"),)),
        Event(side=Side.SERVER, kind=Kind.DATA, raw=b"x" * 100_000, size=200_000, incomplete="cut"),
        Event(side=Side.NONE, kind=Kind.CLOSE, reason=Reason(text="QUIT", clauses=(Clause("quit", (("a", "b"),)),))),
    ]
    for seq, event in enumerate(events):
        event.stamp("smtp-3", seq, seq / 10, "smtp")
    items = [*events, ("user", "smtp-3", "alice"), ("done", "smtp-3")]
    data = dump_batch(items)
    (size,) = HEADER.unpack_from(data)
    assert size == len(data) - HEADER.size
    back = pickle.loads(data[HEADER.size:])
    assert back == items
    assert [repr(e) for e in back[:len(events)]] == [repr(e) for e in events]
    assert all(type(e) is Event for e in back[:len(events)])
