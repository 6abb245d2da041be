"""The grader's own words (report framing, diagnoses, notes, common feedback), as data.

``messages.toml`` beside this module holds one table per message, in the knowledge files'
style (``mailtrace/knowledge/*.toml``): the English and the Spanish side by side, placeholders
in ``{braces}``::

    [diagnosis.syntax-error]
    en = "The program does not start: {error}. ..."
    es = "El programa no arranca: {error}. ..."

:func:`text` is the one loader: a missing language falls back to English, a missing key is an
error in the grader (a test checks every key has both languages).
"""

from __future__ import annotations

import functools
from importlib import resources

from mailtrace._compat import tomllib

LANGUAGES = ("en", "es")


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    """``{"diagnosis.syntax-error": {"en": ..., "es": ...}, ...}``"""
    data = tomllib.loads(resources.files(__package__).joinpath("messages.toml").read_text("utf-8"))
    out: dict[str, dict[str, str]] = {}

    def walk(prefix: str, table: dict) -> None:
        if any(lang in table and isinstance(table[lang], str) for lang in LANGUAGES):
            out[prefix] = {lang: table[lang] for lang in LANGUAGES if isinstance(table.get(lang), str)}
            return
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", data)
    return out


def text(key: str, lang: str = "en", **params: object) -> str:
    """The message ``key`` in ``lang`` with its placeholders filled."""
    entry = catalogue()[key]
    template = entry.get(lang) or entry["en"]
    return template.format(**params)
