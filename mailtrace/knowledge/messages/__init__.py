"""Every sentence mailtrace says to its user, as data: ``<book>.toml`` beside this module (one
book per command or part: ``grading``, ``exercises``, ``github_classroom``), one table per
message with the English and the Spanish side by side, placeholders by name::

    [diagnosis.syntax-error]
    en = "The program does not start: {error}. ..."
    es = "El programa no arranca: {error}. ..."

A message is the table that holds an ``en`` key; its dotted path is its key
(``diagnosis.syntax-error``).  Its value may be a string (a template), a list or a table (column
names, a table of names).  This is the one loader of these texts: :func:`text` fills a template,
:func:`table` returns a list or table; a language without the entry falls back to English, a
key that does not exist is an error (tests/unit/test_messages.py checks that every key the code uses
exists in both languages with the same placeholders, and that every key is used).
"""

from __future__ import annotations

import functools
from importlib import resources

from mailtrace._compat import tomllib

LANGUAGES = ("en", "es")


@functools.cache
def book(name: str) -> dict[str, dict[str, object]]:
    """``{"diagnosis.syntax-error": {"en": ..., "es": ...}, ...}`` from ``<name>.toml``."""
    data = tomllib.loads(resources.files(__package__).joinpath(f"{name}.toml").read_text("utf-8"))
    out: dict[str, dict[str, object]] = {}

    def walk(prefix: str, table: dict) -> None:
        if "en" in table:
            out[prefix] = {lang: table[lang] for lang in LANGUAGES if lang in table}
            return
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", data)
    return out


def books() -> list[str]:
    """The name of every book (``grading``, ``exercises``...)."""
    return sorted(item.name[: -len(".toml")] for item in resources.files(__package__).iterdir()
                  if item.name.endswith(".toml"))


def has(name: str, key: str) -> bool:
    return key in book(name)


def text(name: str, key: str, lang: str = "en", /, **fields: object) -> str:
    """The message ``key`` of book ``name`` in ``lang``, its ``{placeholders}`` filled."""
    entry = book(name)[key]
    template = entry.get(lang, entry["en"])
    return str(template).format(**fields)


def table(name: str, key: str, lang: str = "en", /):
    """A list or a table of texts in ``lang`` (a table's English entries fill its gaps)."""
    entry = book(name)[key]
    value = entry.get(lang, entry["en"])
    if isinstance(value, dict) and isinstance(entry["en"], dict):
        return {**entry["en"], **value}
    return value
