"""imap.toml and the IMAP tables in code stay in sync, both ways, in English and Spanish."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailtrace import knowledge
from mailtrace.protocols.imap import spec
from mailtrace.transcript.event import Event, Kind, Side

TABLES = knowledge.load("imap")
RFC = re.compile(r"RFC \d+ §\d")
IMAP_DIR = Path(spec.__file__).parent

EXPECTED = {
    "states": {s.value for s in spec.State},
    "commands": set(spec.KNOWN_COMMANDS),
    "replies": set(spec.REPLY_CODES),
    "responses": set(spec.RESPONSES),
    "codes": set(spec.RESPONSE_CODES),
    "violations": set(spec.VIOLATIONS - spec.COMMON_VIOLATIONS),
    "data": set(spec.DATA_VERBS),
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


def _source() -> str:
    return "".join(p.read_text("utf-8") for p in IMAP_DIR.glob("*.py"))


def test_violations_in_the_code_are_known():
    used = set(re.findall(r'Note\(\s*"([a-z-]+)"', _source()))
    assert used == set(spec.VIOLATIONS)
    common = knowledge.load("common")["violations"]
    assert all(rule in common for rule in spec.COMMON_VIOLATIONS)


def test_response_codes_in_the_code_are_known():
    src = _source()
    used = set(re.findall(r'code=f?"([A-Z][A-Z-]+)', src)) | set(re.findall(r'"code": "([A-Z][A-Z-]+)"', src))
    used -= set(spec.REPLY_CODES)  # respond(..., code="BAD") is the status, not a [code]
    assert used and used <= set(spec.RESPONSE_CODES), used - set(spec.RESPONSE_CODES)


def test_untagged_responses_in_the_code_are_known():
    used = set(re.findall(r'untagged\([^\n]*, "([A-Z]+)"\)', _source()))
    assert used and used <= set(spec.RESPONSES)


def test_annotate_finds_entries():
    cmd = Event(side=Side.CLIENT, kind=Kind.COMMAND, protocol="imap", verb="UID FETCH", tag="a1")
    assert "UID" in knowledge.annotate(cmd, "en").meaning
    exists = Event(side=Side.SERVER, kind=Kind.REPLY, protocol="imap", tag="*", verb="EXISTS")
    assert "mensajes" in knowledge.annotate(exists, "es").meaning
    tagged = Event(side=Side.SERVER, kind=Kind.REPLY, protocol="imap", tag="a1", code="NO", verb="SELECT")
    assert knowledge.annotate(tagged).rfc == "RFC 3501 §7.1.2"
    lit = Event(side=Side.CLIENT, kind=Kind.LITERAL, protocol="imap", tag="a1")
    assert "octets" in knowledge.annotate(lit).meaning
    assert knowledge.state_heading("imap", "selected", "es")[0].startswith("Selected (seleccionado)")  # RFC name, Spanish gloss


def test_a_response_code_explains_its_line():
    line = Event(side=Side.SERVER, kind=Kind.REPLY, protocol="imap", tag="*", code="OK", response_code="UIDVALIDITY")
    assert "UIDVALIDITY" in knowledge.annotate(line).meaning
    plain = Event(side=Side.SERVER, kind=Kind.REPLY, protocol="imap", tag="a1", code="OK", verb="NOOP")
    assert knowledge.annotate(plain).rfc == "RFC 3501 §7.1.1"
