"""Knowledge citations checked against the RFC texts (issue #9: "knowledge citations are checked
against ../shared/rfc").

Every "RFC NNNN §X.Y" in a knowledge entry, in its ``rfc`` field or in its English or Spanish text,
names a section that exists in that RFC's text, for the RFCs we have (the texts sit in the
course's shared/ folder beside the clone; see ``test_course_notes``).  A section whose title
names one response code ("The IN-USE response code") is cited only for that code.
"""

from __future__ import annotations

import re

import pytest

from mailtrace import knowledge
from mailtrace.protocols.pop3 import spec as pop3_spec
from test_course_notes import RFC_DIR, citations, rfc_text, section_exists

ENTRIES = [e for p in knowledge.protocols() for t in knowledge.load(p).values() for e in t.values()]
CODE_TITLE = re.compile(r"The (\S+) response code", re.IGNORECASE)


def texts_of(entry: knowledge.Entry) -> list[str]:
    out = [entry.rfc]
    for lang in knowledge.LANGUAGES:
        out += [v for v in entry.texts.get(lang, {}).values() if isinstance(v, str)]
    return out


def section_title(text: str, section: str) -> str:
    m = re.search(rf"^\s{{0,6}}{re.escape(section)}\.?\s+(\S.*)$", text, re.M)
    return m.group(1).strip() if m else ""


def needs_rfc_texts() -> None:
    if not (RFC_DIR / "rfc1939.txt").exists():
        pytest.skip(f"the RFC texts are not in {RFC_DIR} (the course's shared/ folder beside this clone)")


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.protocol}.{e.table}.{e.key}")
def test_cited_sections_exist(entry):
    needs_rfc_texts()
    missing = [f"RFC {rfc} §{section}" for text in texts_of(entry) for rfc, section in citations(text)
               if (body := rfc_text(rfc)) is not None and not section_exists(body, section)]
    assert not missing, f"{entry.protocol} {entry.table}.{entry.key} cites sections that do not exist: {missing}"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.protocol}.{e.table}.{e.key}")
def test_a_response_code_section_is_cited_for_its_own_code(entry):
    """[IN-USE] is RFC 2449 §8.1.2 and [LOGIN-DELAY] §8.1.1, not the other way round; a citation
    of such a section in a text follows the code it explains."""
    needs_rfc_texts()
    for text in texts_of(entry):
        for m in re.finditer(r"RFC (\d{3,4}) §([0-9.]+[0-9])", text):
            body = rfc_text(m.group(1))
            title = CODE_TITLE.search(section_title(body, m.group(2))) if body else None
            if title is None:
                continue
            code = title.group(1).upper()
            before = text[max(0, m.start() - 60):m.start()]
            assert entry.key == code or f"[{code}]" in before, (
                f"{entry.protocol} {entry.table}.{entry.key}: RFC {m.group(1)} §{m.group(2)} is about "
                f"[{code}], cited for something else")


def test_citation_checks_catch_the_old_mistakes():
    needs_rfc_texts()
    rfc2449 = rfc_text("2449")
    assert CODE_TITLE.search(section_title(rfc2449, "8.1.1")).group(1) == "LOGIN-DELAY"
    assert CODE_TITLE.search(section_title(rfc2449, "8.1.2")).group(1) == "IN-USE"
    assert not section_exists(rfc_text("1939"), "14.2")


def test_pop3_response_codes_cite_their_own_sections():
    """RFC 3206 is not among the texts: its sections are pinned here (§4 "The SYS Response Code",
    §5 "The AUTH Response Code")."""
    codes = knowledge.load("pop3")["codes"]
    assert {k: e.rfc for k, e in codes.items() if k in ("IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM", "AUTH")} == {
        "IN-USE": "RFC 2449 §8.1.2", "LOGIN-DELAY": "RFC 2449 §8.1.1",
        "SYS/TEMP": "RFC 3206 §4", "SYS/PERM": "RFC 3206 §4", "AUTH": "RFC 3206 §5"}
    assert "RFC 2449" not in knowledge.load("pop3")["commands"]["QUIT"].explain("en")  # SYS/TEMP is RFC 3206


def test_pop3_authorization_lists_every_command_allowed_there():
    """The AUTHORIZATION state's explanation names each command the POP3 spec allows in it (AUTH,
    RFC 5034 §4, and UTF8, RFC 6856 §2, included), in both languages."""
    state = pop3_spec.State.AUTHORIZATION
    allowed = {name for table in (pop3_spec.COMMANDS, pop3_spec.OBSERVED_COMMANDS)
               for name, cmd in table.items() if state in cmd.states}
    assert "AUTH" in allowed
    entry = knowledge.load("pop3")["states"]["AUTHORIZATION"]
    for lang in ("en", "es"):
        named = set(re.findall(r"\b[A-Z][A-Z0-9]{3}\b", entry.explain(lang)))
        assert allowed <= named, (lang, allowed - named)


def test_pop3_list_sizes_are_not_what_retr_sends():
    """RFC 1939 §11: the size is the message's (CRLF line ends); RETR adds the byte-stuffing dots
    and the final dot line, so the text must not say LIST gives what RETR sends."""
    entry = knowledge.load("pop3")["commands"]["LIST"]
    assert "exactly what RETR" not in entry.explain("en") and "justo lo que enviará RETR" not in entry.explain("es")
    assert "RFC 1939 §11" in entry.explain("en") and "RFC 1939 §11" in entry.explain("es")


def test_imap_expunge_order_is_either_way():
    """RFC 3501 §6.4.3's example reports the lowest number first; §7.4.1 allows either order."""
    entry = knowledge.load("imap")["commands"]["EXPUNGE"]
    for lang in ("en", "es"):
        text = entry.explain(lang)
        assert "3, 3, 5, 8" in text and "11, 7, 4, 3" in text and "§7.4.1" in text, lang
    rfc3501 = rfc_text("3501")
    if rfc3501:
        example = rfc3501[rfc3501.index("C: A202 EXPUNGE"):rfc3501.index("A202 OK EXPUNGE completed")]
        assert re.findall(r"\* (\d+) EXPUNGE", example) == ["3", "3", "5", "8"]
