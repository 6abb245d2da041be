"""Checks: named, stable ids, each a pure function of a :class:`~mailtrace.grading.run.Run`.

A check returns an :class:`Outcome`: passed or not, what was expected, what happened, the
offending transcript event (the feedback quotes the transcript around it, with that line
marked) and the RFC section.  Points and visibility are not here: they are data, in each
exercise's ``exercise.toml``; which checks apply to a scenario is data too.  Every text a
student reads (titles, expected, happened, labels) is data as well, English and Spanish side by
side in ``mailtrace/knowledge/messages/grading.toml``: ``[title."<check id>"]`` for a check's
title, ``[check.<rule>]`` with ``expected``/``happened`` (and a ``title`` when the rule that
failed is narrower than the check) for each way a check can fail.

A check must be *narrow*: it fails for the one mistake it names and passes for every correct
client, whatever its style (one write per line or per command, one recv() loop or a line
reader, HELO after a 502, RSET before QUIT...), and for clients whose other mistakes make them
fail other checks.  The mutation test (tests/integration/test_grading_mutation.py) holds the checks to this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mailtrace.knowledge import messages
from mailtrace.transcript.event import Event, Kind

#: feedback is cut to this many characters (a student reads it; a class report holds hundreds)
FEEDBACK_LIMIT = 1600
EXCERPT_BEFORE = 4
EXCERPT_AFTER = 2
EXCERPT_LINE = 160


@dataclass(frozen=True)
class Outcome:
    passed: bool
    expected: str = ""
    happened: str = ""
    event: Event | None = None  # the offending event, marked in the excerpt
    rfc: str = ""
    fraction: float | None = None  # partial credit (0..1) when not simply passed/failed
    title: str = ""  # the title of the rule that failed, when narrower than the check's
    unobserved: bool = False  # not seen: the dialogue stopped earlier (not scored, see grader)


@dataclass(frozen=True)
class Defer:
    """Not judged here: the checks in ``to`` own the root cause (a client out of step after a
    partial read).  The grader keeps this check's points only when one of them fails in the same
    scenario; when the scenario applies none of them, this check takes their failure, so a
    mistake never goes unpunished for want of the right check in a scenario."""

    to: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    id: str
    rfc: str  # a citation ("RFC 5321 §4.5.2"), or a key of [ref.*] in grading.toml ("ref.contract")
    fn: Callable
    static: bool = False  # looks at the submission's source, not at a run (policy)

    @property
    def title(self) -> str:
        return title(self)


REGISTRY: dict[str, Check] = {}
BOOK = "grading"  # mailtrace/knowledge/messages/grading.toml


def check(id: str, rfc: str = "", static: bool = False):
    """Register a check; its title is ``[title."<id>"]`` in grading.toml."""
    def register(fn: Callable) -> Callable:
        if id in REGISTRY:
            raise ValueError(f"duplicate check id {id}")
        REGISTRY[id] = Check(id, rfc, fn, static)
        return fn

    return register


def ok() -> Outcome:
    return Outcome(True)


def fail(expected: str, happened: str, event: Event | None = None, rfc: str = "") -> Outcome:
    return Outcome(False, expected, happened, event, rfc)


def text(key: str, lang: str = "en", /, **params) -> str:
    """One message of the grader (``[key]`` of grading.toml) in ``lang``."""
    return messages.text(BOOK, key, lang, **params)


def said(run, key: str, event: Event | None = None, rfc: str = "", **params) -> Outcome:
    """A failure whose texts are data: ``[check.<key>]`` of grading.toml (``expected``,
    ``happened`` and, when the rule is narrower than its check, ``title``), in the run's
    language.  ``rfc`` is a citation or a ``ref.*`` key."""
    lang = _lang(run)
    rule = f"check.{key}"
    narrower = text(f"{rule}.title", lang, **params) if messages.has(BOOK, f"{rule}.title") else ""
    return Outcome(False, text(f"{rule}.expected", lang, **params), text(f"{rule}.happened", lang, **params),
                   event, reference(rfc, lang), title=narrower)


def phrase(run, key: str, **params) -> str:
    """One message of grading.toml in the run's language."""
    return text(key, _lang(run), **params)


def _lang(run) -> str:
    """The language of a run (or the language itself, for the static checks)."""
    return run if isinstance(run, str) else getattr(run, "lang", "en")


def reference(rfc: str, lang: str = "en") -> str:
    """``rfc`` as the report shows it: a ``ref.*`` key in ``lang`` (prose such as "the exercise's
    contract"), a citation as it is."""
    return text(rfc, lang) if rfc.startswith("ref.") else rfc


def excerpt(events: list[Event], marked: Event | None, show_secrets: bool = True, lang: str = "en") -> str:
    """Transcript lines around ``marked`` (C:/S: prefixes), the marked one flagged with ``>>``."""
    lines = [e for e in events if e.kind in (Kind.COMMAND, Kind.REPLY, Kind.DATA, Kind.LITERAL, Kind.CLOSE)]
    if not lines:
        return ""
    idx = next((i for i, e in enumerate(lines) if e is marked), None)
    if idx is None and marked is not None:
        idx = next((i for i, e in enumerate(lines) if e.seq == marked.seq and e.session == marked.session), None)
    if idx is None:
        idx = len(lines) - 1
        lo, hi = max(0, idx - EXCERPT_BEFORE - 2), idx + 1
    else:
        lo, hi = max(0, idx - EXCERPT_BEFORE), min(len(lines), idx + EXCERPT_AFTER + 1)
    out = []
    for i in range(lo, hi):
        e = lines[i]
        out.append(("  >> " if lines[i] is marked or (marked is not None and i == idx and marked.kind is e.kind) else "     ")
                   + _line(e, show_secrets, lang))
    return "\n".join(out)


def _line(e: Event, show_secrets: bool, lang: str = "en") -> str:
    if e.kind is Kind.CLOSE:
        who = {"C": "client", "S": "server"}.get(e.side.value, "")
        return text(f"excerpt.closed-by-{who}" if who else "excerpt.closed", lang)
    prefix = "C: " if e.side.value == "C" else "S: "
    if e.kind in (Kind.DATA, Kind.LITERAL):
        raw = e.shown(show_secrets)
        first = raw.split(b"\n", 1)[0].rstrip(b"\r")[:60].decode("utf-8", "backslashreplace")
        return prefix + text("excerpt.data", lang, kind=text(f"excerpt.kind.{e.kind.value}", lang),
                                     octets=e.octets, first=first)
    raw = e.shown(show_secrets)
    line = e.text(show_secrets)
    if raw.endswith(b"\n") and not raw.endswith(b"\r\n"):
        line += "\\n   " + text("excerpt.bare-lf", lang)
    if len(line) > EXCERPT_LINE:
        line = line[:EXCERPT_LINE] + "..."
    return prefix + line


def title(check_: Check, lang: str = "en") -> str:
    """The check's title in ``lang`` (``[title."<id>"]``)."""
    return text(f"title.{check_.id}", lang)


def feedback(outcome: Outcome, check_: Check, events: list[Event], lang: str = "en",
             show_secrets: bool = False) -> str:
    if outcome.passed:
        return ""
    label = {k: text(f"label.{k}", lang) for k in ("expected", "happened", "transcript", "see", "cut")}
    parts = []
    if outcome.expected:
        parts.append(f"{label['expected']}: {outcome.expected}")
    if outcome.happened:
        parts.append(f"{label['happened']}: {outcome.happened}")
    ex = excerpt(events, outcome.event, show_secrets, lang) if outcome.event is not None else ""
    if ex:
        parts.append(f"{label['transcript']}:\n" + ex)
    rfc = outcome.rfc or reference(check_.rfc, lang)
    if rfc:
        parts.append(f"{label['see']} {rfc}.")
    out = "\n".join(parts)
    if len(out) > FEEDBACK_LIMIT:
        out = out[: FEEDBACK_LIMIT - 20] + "\n" + label["cut"]
    return out


def load_all() -> dict[str, Check]:
    """Import every check module (they register themselves)."""
    from mailtrace.grading.checks import common, imap, mime, pop3, servers, smtp  # noqa: F401

    return REGISTRY
