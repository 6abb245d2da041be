"""Every sentence of mailtrace/knowledge/messages/*.toml (the one loader of the program's words):
each key in English and Spanish with the same placeholders, every key the code asks for exists,
and every key is used somewhere in the code (no dead text, no text the code cannot find).

"Used" is read from the source: the string literals and f-strings given to the loader's
functions (``text``, ``said``, ``phrase``, ``say``, ``msg``...); an f-string key (``f"limit.{key}"``)
stands for every key it matches, and must match at least one.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from mailtrace.grading.checks import REGISTRY, load_all
from mailtrace.knowledge import messages

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "mailtrace"

#: function name -> (index of the key argument, book, prefix of the key in the book, suffixes)
#: (said() reads a rule's expected / happened / title; a check's rfc may be a ref.* key)
LOADERS = {
    "said": (1, "grading", "check.", (".expected", ".happened", ".title")),
    "phrase": (1, "grading", "", ("",)),
    "say": (1, "grading", "server.", ("",)),
    "msg": (0, "grading", "", ("",)),
    "_say": (1, "grading", "files.", ("",)),  # grading/files.py
    "finding": (0, "grading", "server.", ("",)),  # a real client's finding (grading/servers/runner.py)
    "ExerciseError": (0, "grading", "", ("",)),  # an exercise's configuration error (grading/exercise.py)
}
#: modules whose ``text(KEY, ...)`` / ``_t(KEY, ...)`` read one book
BOOK_OF_MODULE = {"grading": "grading", "cli/exercises.py": "exercises", "cli/classroom_workflow.py": "github_classroom",
                  "grading/github_classroom.py": "github_classroom"}


def _book_of(path: Path) -> str:
    rel = path.relative_to(CODE).as_posix()
    return next((b for prefix, b in sorted(BOOK_OF_MODULE.items(), key=lambda x: -len(x[0])) if rel.startswith(prefix)),
                "grading")


#: the code that speaks through the loader (elsewhere ``phrase`` and ``text`` are other functions)
SPEAKERS = ("grading/", "cli/exercises.py", "cli/classroom_workflow.py", "cli/grade.py")


def _patterns(node: ast.AST) -> list[str]:
    """The keys an argument may name: a literal, an f-string, either side of ``a if c else b``."""
    if isinstance(node, ast.IfExp):
        return _patterns(node.body) + _patterns(node.orelse)
    pattern = _pattern(node)
    # a key made only of placeholders (said()'s own f"{rule}.expected") names no key in particular
    return [pattern] if pattern is not None and not pattern.startswith(r"[\w.-]+") else []


def _pattern(node: ast.AST) -> str | None:
    """A regular expression for the key a literal or f-string names (None: not a string)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(re.escape(value.value))
            else:
                parts.append(r"[\w.-]+")
        return "".join(parts)
    return None


def uses(with_fields: bool = False) -> list[tuple]:
    """(book, key pattern, prefix, suffixes, where) for every key the code gives a loader (and the
    names of the fields it fills, None when it passes ``**fields``, with ``with_fields``)."""
    found = []
    for path in sorted(CODE.rglob("*.py")):
        if not path.relative_to(CODE).as_posix().startswith(SPEAKERS):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        book = _book_of(path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else ""
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in LOADERS:
                index, b, prefix, suffixes = LOADERS[name]
            elif name in ("text", "table", "_t") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and first.value in messages.books() and len(node.args) > 1:
                    index, b, prefix, suffixes = 1, first.value, "", ("",)  # messages.text(BOOK, KEY, ...)
                else:
                    index, b, prefix, suffixes = 0, book, "", ("",)
            else:
                continue
            if len(node.args) > index:
                names = None if any(k.arg is None for k in node.keywords) else \
                    {k.arg for k in node.keywords} - {"rfc"}
                for pattern in _patterns(node.args[index]):
                    found.append((b, pattern, prefix, suffixes, where) + ((names,) if with_fields else ()))
    return found


def references() -> set[str]:
    """Every ``ref.*`` key named by a string in the code (a check's or an outcome's rfc)."""
    out = set()
    for path in sorted((CODE / "grading").rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        inner = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            pattern = _pattern(node) if id(node) not in inner else None
            if pattern and pattern.startswith(r"ref\.") and pattern != r"ref\.":
                out.add(pattern)
    return out


def holes(template: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}


@pytest.mark.parametrize("book", messages.books())
def test_every_message_is_in_both_languages_with_the_same_placeholders(book):
    entries = messages.book(book)
    assert entries
    for key, entry in entries.items():
        assert set(entry) == set(messages.LANGUAGES), f"{book}: {key} lacks a language"
        en, es = entry["en"], entry["es"]
        assert type(en) is type(es), f"{book}: {key}"
        if isinstance(en, str):
            assert holes(en) == holes(es), f"{book}: {key}: {holes(en)} != {holes(es)}"
            assert es.strip(), f"{book}: {key}: empty Spanish"
        elif isinstance(en, list):
            assert len(en) == len(es), f"{book}: {key}"


def test_every_key_the_code_uses_exists():
    missing = []
    for book, pattern, prefix, suffixes, where in uses():
        keys = messages.book(book)
        regex = re.compile(re.escape(prefix) + pattern + "(?:" + "|".join(re.escape(s) for s in suffixes) + ")")
        if not any(regex.fullmatch(k) for k in keys):
            missing.append(f"{where}: {book}: {prefix}{pattern}")
    for ref in references():
        if not any(re.fullmatch(ref, k) for k in messages.book("grading")):
            missing.append(f"reference {ref}")
    assert not missing, "keys the code asks for that no book holds:\n" + "\n".join(missing)


def test_every_call_fills_the_placeholders_of_its_message():
    """A placeholder left unfilled would make the check raise (and a check that raises gives the
    student the points): every call names each field its message needs, in both languages."""
    wrong = []
    for book, pattern, prefix, suffixes, where, names in uses(with_fields=True):
        if names is None:
            continue
        regex = re.compile(re.escape(prefix) + pattern + "(?:" + "|".join(re.escape(s) for s in suffixes) + ")")
        for key, entry in messages.book(book).items():
            if regex.fullmatch(key):
                for lang, template in entry.items():
                    if isinstance(template, str) and not holes(template) <= names:
                        wrong.append(f"{where}: {book}: {key} ({lang}) needs {sorted(holes(template) - names)}")
    assert not wrong, "\n".join(wrong)


def test_every_key_is_used():
    load_all()
    patterns: dict[str, list[re.Pattern]] = {}
    for book, pattern, prefix, suffixes, _ in uses():
        patterns.setdefault(book, []).append(
            re.compile(re.escape(prefix) + pattern + "(?:" + "|".join(re.escape(s) for s in suffixes) + ")"))
    patterns.setdefault("grading", []).extend(re.compile(r) for r in references())
    unused = []
    for book in messages.books():
        for key in messages.book(book):
            if not any(p.fullmatch(key) for p in patterns.get(book, [])):
                unused.append(f"{book}: {key}")
    assert not unused, "keys no code uses:\n" + "\n".join(unused)


def test_every_check_has_a_title_and_every_title_a_check():
    load_all()
    titles = {k[len("title."):] for k in messages.book("grading") if k.startswith("title.")}
    assert titles == set(REGISTRY)
    assert REGISTRY["smtp.crlf"].title == "Lines end in CRLF"
    assert messages.text("grading", "title.smtp.crlf", "es") == "Las líneas terminan en CRLF"


def test_the_loader_falls_back_to_english_and_fails_loudly_on_an_unknown_key():
    assert messages.table("exercises", "columns", "es")[0] == "ejercicio"
    assert messages.table("exercises", "languages", "xx")[".py"] == "Python"
    with pytest.raises(KeyError):
        messages.text("grading", "no.such.key")


def test_the_grader_has_no_other_loader_of_texts():
    """One loader: no TOML of texts under mailtrace/grading, no tomllib outside the loaders."""
    assert not list((CODE / "grading").rglob("*.toml"))
    for path in (CODE / "grading").rglob("*.py"):
        source = path.read_text("utf-8")
        if path.name == "exercise.py":
            continue  # reads exercise.toml and scenarios (the exercises' data, not texts)
        assert "tomllib" not in source, path
