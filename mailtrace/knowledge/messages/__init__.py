"""The texts a command prints, as data: ``<command>.toml`` with one table per language.

    [en]
    copied = "Wrote {files} into {dir}."
    [es]
    copied = "Escritos {files} en {dir}."

:func:`text` fills the ``{placeholders}``; a key missing in Spanish falls back to English.
"""

from __future__ import annotations

import functools
from importlib import resources

from mailtrace._compat import tomllib

LANGUAGES = ("en", "es")


@functools.cache
def load(command: str) -> dict[str, dict]:
    """``{lang: {key: value}}`` from ``<command>.toml``."""
    return tomllib.loads(resources.files(__package__).joinpath(f"{command}.toml").read_text("utf-8"))


def text(command: str, key: str, lang: str = "en", **fields: object) -> str:
    data = load(command)
    template = data.get(lang, {}).get(key, data["en"][key])
    return template.format(**fields) if fields else template


def table(command: str, key: str, lang: str = "en") -> dict:
    """A table of texts (``[en.languages]``...), English entries filling the gaps."""
    data = load(command)
    return {**data["en"].get(key, {}), **data.get(lang, {}).get(key, {})}
