"""pop3.toml and the POP3 tables in code stay in sync, both ways, in English and Spanish."""

from __future__ import annotations

import re

import pytest

from mailtrace import knowledge
from mailtrace.protocols import pop3
from mailtrace.protocols.pop3 import spec
from mailtrace.transcript.event import Event, Kind, Side


def receive(core, data: bytes) -> list:
    """The core's outputs for ``data``, its store jobs (``Pending``) run at once as a shell would."""
    from mailtrace.protocols.base import settle

    return settle(core.receive(data))


TABLES = knowledge.load("pop3")
RFC = re.compile(r"RFC \d+ §\d")

EXPECTED = {
    "states": {s.value for s in pop3.State},
    "commands": set(pop3.COMMANDS) | set(pop3.KNOWN_COMMANDS),
    "replies": set(pop3.REPLY_CODES) | set(pop3.DOCUMENTED_CODES),
    "codes": set(pop3.RESPONSE_CODES),
    "violations": set(pop3.VIOLATIONS),
    "data": set(pop3.DATA_VERBS),
}


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_both_ways(table):
    assert set(TABLES.get(table, {})) == EXPECTED[table]


def test_no_other_tables():
    assert set(TABLES) == set(EXPECTED)


@pytest.mark.parametrize("entry", [e for t in TABLES.values() for e in t.values()], ids=lambda e: f"{e.table}.{e.key}")
def test_entry_is_bilingual_and_cites_an_rfc_section(entry):
    assert entry.texts.get("en", {}).get("meaning") and entry.texts.get("es", {}).get("meaning")
    assert RFC.search(entry.rfc), entry.rfc
    assert bool(entry.texts["en"].get("explain")) == bool(entry.texts["es"].get("explain"))


def test_violations_in_the_code_are_known():
    source = "".join(open(m.__file__, encoding="utf-8").read() for m in (pop3.spec, pop3.server, pop3.observer))
    used = set(re.findall(r'Note\("([a-z-]+)"', source))
    used |= set(re.findall(r'_discard\("([a-z-]+)"\)', source))
    assert used and used <= spec.VIOLATIONS
    assert spec.VIOLATIONS - used == set(), "every violation rule is emitted somewhere"


def test_annotate_finds_entries():
    cmd = Event(side=Side.CLIENT, kind=Kind.COMMAND, protocol="pop3", verb="RETR", raw=b"RETR 1\r\n")
    assert "message" in knowledge.annotate(cmd, "en").meaning
    assert "mensaje" in knowledge.annotate(cmd, "es").meaning
    reply = Event(side=Side.SERVER, kind=Kind.REPLY, protocol="pop3", code="-ERR", verb="RETR")
    assert knowledge.annotate(reply).rfc == "RFC 1939 §3"
    data = Event(side=Side.SERVER, kind=Kind.DATA, protocol="pop3", verb="RETR")
    assert knowledge.annotate(data).meaning
    # The RFC's state name as is, the explanation in Spanish (glossary: states).
    assert knowledge.state_heading("pop3", "TRANSACTION", "es")[0].startswith("TRANSACTION (transacción): el buzón")


def test_response_code_is_explained_before_the_status():
    from mailtrace.protocols.base import send_all
    from mailtrace.protocols.pop3 import Pop3ServerConnection
    from test_pop3_fakes import FakeStore

    store = FakeStore()
    store.locked.add("alice")
    conn = Pop3ServerConnection(store, "<1@x>")
    conn.start()
    out = receive(conn, b"USER alice\r\nPASS secret\r\n")
    refused = [e for e in out if getattr(e, "code", "") == "-ERR"][0]
    assert send_all(out).endswith(b"-ERR [IN-USE] maildrop already locked by another session\r\n")
    assert refused.response_code == "IN-USE"
    assert knowledge.annotate(refused, "es").meaning.startswith("[IN-USE]")
    observed = pop3.Pop3Observer()
    observed.feed_server(b"+OK hi\r\n")
    observed.feed_client(b"USER alice\r\n")
    observed.feed_server(b"+OK\r\n")
    observed.feed_client(b"PASS x\r\n")
    (event,) = observed.feed_server(refused.raw)
    assert event.response_code == "IN-USE"
