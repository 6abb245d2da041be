"""Annotation knowledge: what each command, reply, state and mistake means, as data.

The text lives in TOML files beside this module, one per protocol (``smtp.toml``,
``pop3.toml``, ``imap.toml``) plus ``common.toml`` for things every protocol shares
(open, close, TLS, gaps).  Each file has tables of entries::

    [commands.MAIL]                       # tables: commands, replies, responses, states,
    rfc = "RFC 5321 §4.1.1.2"             #         violations, data, phases, codes
    syntax = "MAIL FROM:<reverse-path> [SP <mail-parameters>]"   # optional
    phase = "transfer"                    # optional (states: which lecture phase)
    en.meaning = "Starts a mail transaction and gives the envelope sender."
    en.explain = "A longer explanation for students ..."
    es.meaning = "Inicia una transacción de correo e indica el remitente del sobre."
    es.explain = "..."

Renderers never hard-code explanations: they call :func:`annotate` on an event.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from importlib import resources

from mailtrace._compat import tomllib
from typing import Mapping

from mailtrace.transcript.event import Clause, Event, Kind, Reason, facts_from_info

LANGUAGES = ("en", "es")
TABLES = ("commands", "replies", "responses", "states", "violations", "data", "phases", "codes", "extensions",
          "events", "concepts")


@dataclass(frozen=True)
class Entry:
    """One piece of knowledge: a command, a reply code, a state, a violation rule..."""

    protocol: str
    table: str
    key: str
    rfc: str
    texts: dict  # {"en": {"meaning": ..., "explain": ...}, "es": {...}}
    extra: dict  # syntax, phase, ... (anything else in the TOML entry)

    def meaning(self, lang: str = "en") -> str:
        return self._text(lang, "meaning")

    def explain(self, lang: str = "en") -> str:
        return self._text(lang, "explain")

    def _text(self, lang: str, what: str) -> str:
        text = self.texts.get(lang, {}).get(what) or self.texts.get("en", {}).get(what, "")
        return text.strip()


@functools.cache
def load(protocol: str) -> dict[str, dict[str, Entry]]:
    """Load ``<protocol>.toml`` into ``{table: {key: Entry}}`` (empty if there is no file)."""
    try:
        text = resources.files(__package__).joinpath(f"{protocol}.toml").read_text("utf-8")
    except FileNotFoundError:
        return {}
    data = tomllib.loads(text)
    tables: dict[str, dict[str, Entry]] = {}
    for table, entries in data.items():
        if not isinstance(entries, dict):
            continue
        tables[table] = {}
        for key, body in entries.items():
            if not isinstance(body, dict):
                continue
            texts = {lang: body[lang] for lang in LANGUAGES if isinstance(body.get(lang), dict)}
            extra = {k: v for k, v in body.items() if k not in LANGUAGES and k != "rfc"}
            tables[table][str(key)] = Entry(protocol, table, str(key), body.get("rfc", ""), texts, extra)
    return tables


def lookup(protocol: str, table: str, key: str) -> Entry | None:
    entries = load(protocol).get(table, {})
    entry = entries.get(key)
    if entry is None:
        entry = entries.get(key.upper())
    if entry is None and protocol != "common":
        entry = load("common").get(table, {}).get(key)
    return entry


NOT_KNOWLEDGE = ("glossary",)  # data files beside the knowledge that are not tables of entries


def protocols() -> list[str]:
    """Every protocol that has a knowledge file."""
    names = []
    for item in resources.files(__package__).iterdir():
        if item.name.endswith(".toml") and item.name[: -len(".toml")] not in NOT_KNOWLEDGE:
            names.append(item.name[: -len(".toml")])
    return sorted(names)


class _Texts(string.Formatter):
    """``str.format`` plus one rule for counted words: ``{n:session|sessions}`` is the first form
    when ``n`` is 1, the second otherwise (0 sessions, 2 sessions; in Spanish too: 0 sesiones)."""

    def format_field(self, value: object, format_spec: str) -> str:
        if "|" in format_spec:
            one, other = format_spec.split("|", 1)
            return one if str(value).strip() == "1" else other
        return super().format_field(value, format_spec)


def fill(template: str, **fields: object) -> str:
    """``template`` with its ``{names}`` (and ``{name:one|other}`` words) filled in from ``fields``;
    the template as it is when a name is missing or the template is malformed."""
    try:
        return _Texts().format(template, **fields)
    except (KeyError, IndexError, ValueError, AttributeError):
        return template


def phrase(table: str, key: str, lang: str = "en", **fields: object) -> str:
    """One of the program's own words or sentences (``[table.key]`` of ``common.toml``) in
    ``lang``, its ``{names}`` filled in from ``fields``; the key itself when there is no entry.
    A counted word is written ``{sessions} {sessions:session|sessions}`` (see ``fill``)."""
    entry = lookup("common", table, key)
    template = entry.meaning(lang) if entry else key
    return fill(template, **fields)


# Close reasons travel in a CLOSE event's ``reason`` (a transcript.event.Reason): ``text`` is the
# English sentence (plain logs, version-1 readers), ``clauses`` the [close] keys it was made of,
# so each renderer says it in its language.
def because(key: str, before: "Reason | Mapping[str, str] | str | None" = None, **fields: object) -> Reason:
    """The reason of a CLOSE (or GAP) event whose last clause is ``[close.KEY]``, its ``{names}``
    from ``fields``; added after ``before`` (a reason already given, or a free text) when given."""
    if isinstance(before, Mapping):  # the version-1 ``info`` shape ("reason", "why")
        before = facts_from_info(before).get("reason")
    elif isinstance(before, str):
        before = Reason(text=before) if before else None
    clauses = list(before.clauses) if before is not None else []
    if before is not None and before.text and not clauses:
        clauses = [Clause("", (("text", before.text),))]  # free text (an error message): kept as it is
    clauses.append(Clause(key, tuple((name, str(value)) for name, value in fields.items())))
    english = "; ".join(part for part in (before.text if before is not None else "",
                                          phrase("close", key, "en", **fields)) if part)
    return Reason(text=english, clauses=tuple(clauses))


def close_reason(what: "Event | Reason | Mapping[str, str] | None", lang: str = "en") -> str:
    """A CLOSE (or GAP) event's reason in ``lang``: its clauses worded from ``[close]``, or the
    recorded English text when it has none.  Takes the event, its ``Reason``, or (transcripts and
    producers of the version-1 shape) an ``info`` dict."""
    if isinstance(what, Event):
        what = what.reason
    elif isinstance(what, Mapping):
        what = facts_from_info(what).get("reason")
    if what is None:
        return ""
    if what.clauses:
        return "; ".join(phrase("close", c.key, lang, **dict(c.fields)) if c.key else dict(c.fields).get("text", "")
                         for c in what.clauses)
    return what.text


def tls_mark(event: Event, lang: str = "en") -> str:
    """What the proxy's TLS mark says (``event.tls.mark``, a ``[proxy]`` key) in ``lang``; "" when
    the event has no mark (a lab server's TLS event, an older transcript: renderers fall back)."""
    mark = event.tls.mark if event.tls is not None else ""
    if mark and lookup("common", "proxy", mark) is not None:
        return phrase("proxy", mark, lang)
    return ""


INFO = "info"  # severity of a note that tells what happened and breaks no rule


def severity(protocol: str, rule: str) -> str:
    """"violation" (a rule was broken) or "info" (``severity = "info"`` in the rule's entry:
    something worth knowing that the RFC allows, such as a POP3 session dropped without QUIT)."""
    entry = lookup(protocol or "common", "violations", rule)
    return str(entry.extra.get("severity", "violation")) if entry else "violation"


def mistakes(event: Event) -> list:
    """The notes of ``event`` that report a broken rule (not the informative ones)."""
    return [n for n in event.notes if severity(event.protocol, n.rule) != INFO]


@functools.cache
def glossary() -> list[dict]:
    """The course's Spanish glossary (``glossary.toml``): ``[{"en", "es", "note", "avoid": [{"pattern",
    "unless", "why", "bad", "ok"}, ...]}, ...]``; tests/unit/test_spanish_glossary.py enforces it."""
    text = resources.files(__package__).joinpath("glossary.toml").read_text("utf-8")
    return tomllib.loads(text).get("term", [])


@dataclass(frozen=True)
class Annotation:
    meaning: str  # one line: what this line means
    rfc: str  # where the rule is written
    problems: tuple[tuple[str, str, str], ...]  # (meaning, rfc, detail) for each violation
    infos: tuple[tuple[str, str, str], ...] = ()  # the same for each informative note (no rule broken)


def entry_for(event: Event) -> Entry | None:
    """The knowledge entry that explains ``event`` (None when there is none)."""
    proto = event.protocol or "common"
    if event.kind is Kind.COMMAND:
        return lookup(proto, "commands", event.verb)
    if event.kind is Kind.REPLY:
        # A specific untagged response (IMAP "* 3 EXISTS") wins over its status word.
        if event.verb and event.code in ("", "*"):
            entry = lookup(proto, "responses", event.verb)
            if entry:
                return entry
        # A response code (IMAP "* OK [UIDVALIDITY 3]") or an EHLO keyword ("250-PIPELINING",
        # table "extensions") says more than its status.
        code = event.response_code
        entry = (lookup(proto, "codes", code) or lookup(proto, "extensions", code)) if code else None
        if entry:
            return entry
        entry = lookup(proto, "replies", event.code) if event.code else None
        if entry is None and event.verb:
            entry = lookup(proto, "responses", event.verb)
        return entry
    if event.kind in (Kind.DATA, Kind.LITERAL):
        return lookup(proto, "data", event.verb or event.kind.value)
    if event.kind is Kind.VIOLATION and event.notes and not mistakes(event):
        return lookup(proto, "events", "note")  # only informative notes: no rule was broken
    return lookup(proto, "events", event.kind.value)


def annotate(event: Event, lang: str = "en") -> Annotation:
    entry = entry_for(event)
    problems, infos = [], []
    for note in event.notes:
        rule = lookup(event.protocol or "common", "violations", note.rule)
        if rule is None:
            problems.append((note.rule, "", note.detail))
            continue
        detail = note.detail
        template = rule.texts.get(lang, {}).get("detail") or rule.texts.get("en", {}).get("detail")
        if template and detail:  # the rule words its detail: the core recorded only the facts
            try:
                detail = template.strip().format(detail=detail)
            except (KeyError, IndexError, ValueError):
                pass
        (infos if rule.extra.get("severity") == INFO else problems).append((rule.meaning(lang), rule.rfc, detail))
    return Annotation(
        meaning=entry.meaning(lang) if entry else "",
        rfc=entry.rfc if entry else "",
        problems=tuple(problems),
        infos=tuple(infos),
    )


def state_heading(protocol: str, state: str, lang: str = "en") -> tuple[str, str] | None:
    """(heading, key) of the phase or state a state belongs to, for section headings.

    SMTP states map to the lecture's three phases (handshake, transfer, closing) through the
    ``phase`` field of their ``states`` entry; POP3 and IMAP states are headings themselves.
    """
    entry = lookup(protocol, "states", state)
    if entry is None:
        return None
    phase = entry.extra.get("phase")
    if phase:
        phase_entry = lookup(protocol, "phases", phase)
        if phase_entry:
            return phase_entry.meaning(lang), phase
    return entry.meaning(lang), state
