"""One Spanish glossary (mailtrace/knowledge/glossary.toml) for every Spanish text of the course.

The rules are tested on their own examples first (each must flag its ``bad`` examples and let
its ``ok`` ones pass: "en orden" is "in order", "clave pública" a public key), then every
Spanish text is scanned: the notes, the labs, the answer keys, the exercises, every ``es``
string of mailtrace/knowledge/**/*.toml, and the grader's Spanish texts (any TOML under
exercises/ named ``es.toml`` or ``*.es.toml``, and the ``es`` strings of the others; the grader's
feedback is in mailtrace/knowledge/messages/grading.toml).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailtrace import knowledge
from mailtrace._compat import tomllib

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = ROOT / "mailtrace" / "knowledge"


def rules() -> list[tuple[str, dict]]:
    """(the Spanish term, its avoid rule) for every rule of the glossary."""
    return [(term["es"], rule) for term in knowledge.glossary() for rule in term.get("avoid", [])]


def findings(text: str, rule: dict) -> list[str]:
    """The variants ``rule`` forbids in ``text`` (a match covered by an ``unless`` match is fine)."""
    pattern = re.compile(rule["pattern"])
    unless = re.compile(rule["unless"]) if rule.get("unless") else None
    found = []
    for m in pattern.finditer(text):
        if unless is not None:
            lo = max(0, m.start() - 80)
            window = text[lo:m.end() + 80]
            if any(u.start() + lo <= m.start() and u.end() + lo >= m.end() for u in unless.finditer(window)):
                continue
        found.append(m.group(0).strip())
    return found


def _strings(value, spanish: bool):
    """Every string in a parsed TOML value; only those under an ``es`` key (``es.meaning``,
    ``es = "..."``) or a ``*_es`` key (``title_es``, ``description_es``) unless ``spanish``."""
    if isinstance(value, str):
        if spanish:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, spanish or key == "es" or key.endswith("_es"))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, spanish)


def spanish_texts() -> list[tuple[str, str]]:
    """(where, text) of every Spanish text in the repository."""
    out = []
    files = [ROOT / "course_notes.es.md", *ROOT.glob("labs/*/README.es.md"), *ROOT.glob("labs/README.es.md"),
             *ROOT.glob("solutions/**/*.es.md"), *ROOT.glob("exercises/*/README.es.md")]
    for path in sorted(set(files)):
        out.append((str(path.relative_to(ROOT)), path.read_text("utf-8")))
    for path in sorted(KNOWLEDGE.rglob("*.toml")):  # the knowledge, its diagrams and message files
        if path.stem in knowledge.NOT_KNOWLEDGE:
            continue
        data = tomllib.loads(path.read_text("utf-8"))
        out += [(f"{path.relative_to(ROOT)}", text) for text in _strings(data, False)]
    grading = [*(ROOT / "mailtrace" / "grading").rglob("*.toml"), *(ROOT / "exercises").rglob("*.toml")]
    for path in sorted(grading):
        data = tomllib.loads(path.read_text("utf-8"))
        whole = path.stem == "es" or path.stem.endswith(".es")
        out += [(f"{path.relative_to(ROOT)}", text) for text in _strings(data, whole)]
    return out


def test_every_term_is_complete():
    terms = knowledge.glossary()
    assert len(terms) >= 10
    for term in terms:
        assert term.get("en") and term.get("es"), term
        for rule in term.get("avoid", []):
            assert rule.get("pattern") and rule.get("why") and rule.get("bad") and rule.get("ok"), rule


@pytest.mark.parametrize("term,rule", rules(), ids=lambda x: x if isinstance(x, str) else x["why"][:40])
def test_rule_flags_its_bad_examples_and_passes_its_good_ones(term, rule):
    for example in rule["bad"]:
        assert findings(example, rule), f"{term}: {rule['why']}: not flagged: {example!r}"
    for example in rule["ok"]:
        assert not findings(example, rule), f"{term}: {rule['why']}: wrongly flagged: {example!r}"


def test_the_scan_covers_every_kind_of_spanish_text():
    where = {w for w, _ in spanish_texts()}
    assert "course_notes.es.md" in where
    assert any(w.startswith("labs/") for w in where) and any(w.startswith("solutions/") for w in where)
    assert any(w.startswith("exercises/") for w in where)
    assert {"mailtrace/knowledge/smtp.toml", "mailtrace/knowledge/pop3.toml", "mailtrace/knowledge/imap.toml",
            "mailtrace/knowledge/common.toml"} <= where
    assert "mailtrace/knowledge/messages/grading.toml" in where  # the grader's Spanish feedback
    assert "exercises/smtp-client/scenarios/basic.toml" in where  # description_es


def test_every_spanish_text_follows_the_glossary():
    problems = []
    for where, text in spanish_texts():
        for term, rule in rules():
            for variant in findings(text, rule):
                problems.append(f"{where}: {variant!r}: {rule['why']}")
    assert not problems, f"{len(problems)} words outside the glossary:\n" + "\n".join(problems)
