"""The web view's own words (``knowledge/web.toml``, table ``ui``) and its language choice."""

from __future__ import annotations

import functools

from mailtrace import knowledge

LANGUAGES = knowledge.LANGUAGES


@functools.cache
def ui_texts(lang: str) -> dict[str, str]:
    """{key: text} of every UI string, in ``lang`` (English where a text is missing)."""
    return {key: entry.meaning(lang) for key, entry in knowledge.load("web").get("ui", {}).items()}


def pick_language(request, default: str) -> str:
    """``?lang=es`` wins; then the lab's ``--lang es``; then the browser's Accept-Language."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    if default != "en":
        return default if default in LANGUAGES else "en"
    for item in request.headers.get("Accept-Language", "").split(","):
        code = item.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"
