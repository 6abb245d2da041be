"""Checks: named, stable ids, each a pure function of a :class:`~mailtrace.grading.run.Run`.

A check returns an :class:`Outcome`: passed or not, what was expected, what happened, the
offending transcript event (the feedback quotes the transcript around it, with that line
marked) and the RFC section.  Points and visibility are not here: they are data, in each
exercise's ``exercise.toml``; which checks apply to a scenario is data too.

A check must be *narrow*: it fails for the one mistake it names and passes for every correct
client, whatever its style (one write per line or per command, one recv() loop or a line
reader, HELO after a 502, RSET before QUIT...), and for clients whose other mistakes make them
fail other checks.  The mutation test (tests/test_grading_mutation.py) holds the checks to this.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from mailtrace._compat import tomllib
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
    title: str
    rfc: str
    fn: Callable
    static: bool = False  # looks at the submission's source, not at a run (policy)


REGISTRY: dict[str, Check] = {}


def check(id: str, title: str, rfc: str = "", static: bool = False):
    def register(fn: Callable) -> Callable:
        if id in REGISTRY:
            raise ValueError(f"duplicate check id {id}")
        REGISTRY[id] = Check(id, title, rfc, fn, static)
        return fn

    return register


def ok() -> Outcome:
    return Outcome(True)


def fail(expected: str, happened: str, event: Event | None = None, rfc: str = "") -> Outcome:
    return Outcome(False, expected, happened, event, rfc)


def said(run, key: str, event: Event | None = None, rfc: str = "", **params) -> Outcome:
    """A failure whose texts are data: ``check.<key>.expected`` / ``.happened`` in
    ``grading/messages.toml``, in the run's language."""
    from mailtrace.grading.messages import text

    lang = getattr(run, "lang", "en")
    return Outcome(False, text(f"check.{key}.expected", lang, **params), text(f"check.{key}.happened", lang, **params),
                   event, rfc)


def phrase(run, key: str, **params) -> str:
    """One message of ``grading/messages.toml`` in the run's language."""
    from mailtrace.grading.messages import text

    return text(key, getattr(run, "lang", "en"), **params)


def excerpt(events: list[Event], marked: Event | None, show_secrets: bool = True) -> str:
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
                   + _line(e, show_secrets))
    return "\n".join(out)


def _line(e: Event, show_secrets: bool) -> str:
    if e.kind is Kind.CLOSE:
        who = {"C": "client", "S": "server"}.get(e.side.value, "")
        return f"-- connection closed{' by the ' + who if who else ''}"
    prefix = "C: " if e.side.value == "C" else "S: "
    if e.kind in (Kind.DATA, Kind.LITERAL):
        raw = e.shown(show_secrets)
        first = raw.split(b"\n", 1)[0].rstrip(b"\r")[:60].decode("utf-8", "backslashreplace")
        return f"{prefix}[{e.kind.value}: {e.octets} octets] {first}..."
    raw = e.shown(show_secrets)
    text = e.text(show_secrets)
    if raw.endswith(b"\n") and not raw.endswith(b"\r\n"):
        text += "\\n   <- bare LF, no CR"
    if len(text) > EXCERPT_LINE:
        text = text[:EXCERPT_LINE] + "..."
    return prefix + text


LABELS_EN = {"expected": "Expected", "happened": "Happened", "transcript": "Transcript", "see": "See",
             "cut": "[... feedback cut]"}


@functools.cache
def _translations(lang: str) -> dict:
    """Titles and labels for ``lang`` (checks/<lang>.toml); English needs none."""
    if lang == "en":
        return {}
    try:
        return tomllib.loads(resources.files(__package__).joinpath(f"{lang}.toml").read_text("utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return {}


def title(check_: Check, lang: str = "en") -> str:
    return _translations(lang).get("titles", {}).get(check_.id, check_.title)


def feedback(outcome: Outcome, check_: Check, events: list[Event], lang: str = "en",
             show_secrets: bool = False) -> str:
    if outcome.passed:
        return ""
    label = {**LABELS_EN, **_translations(lang).get("labels", {})}
    parts = []
    if outcome.expected:
        parts.append(f"{label['expected']}: {outcome.expected}")
    if outcome.happened:
        parts.append(f"{label['happened']}: {outcome.happened}")
    ex = excerpt(events, outcome.event, show_secrets) if outcome.event is not None else ""
    if ex:
        parts.append(f"{label['transcript']}:\n" + ex)
    rfc = outcome.rfc or check_.rfc
    if rfc:
        parts.append(f"{label['see']} {rfc}.")
    text = "\n".join(parts)
    if len(text) > FEEDBACK_LIMIT:
        text = text[: FEEDBACK_LIMIT - 20] + "\n" + label["cut"]
    return text


def load_all() -> dict[str, Check]:
    """Import every check module (they register themselves)."""
    from mailtrace.grading.checks import common, imap, mime, pop3, servers, smtp  # noqa: F401

    return REGISTRY
