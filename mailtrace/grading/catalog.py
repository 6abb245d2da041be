"""The exercises a student can start: list them, and copy one's statement and skeleton.

An exercise folder (see exercises/README.md) holds what a student gets, the statement
(``README.md``, ``README.es.md``) and the skeleton program(s), beside what only the grader
reads (``exercise.toml``, ``scenarios/``).  :func:`copy` writes the first kind into the
student's folder and never overwrites a file that is already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailtrace.grading.exercise import (ExerciseError, _load_toml, exercise_names, exercises_root, find_exercise,
                                        load_exercise)

#: what only the grader reads: never copied into a student's folder
GRADER_ONLY = ("exercise.toml",)


@dataclass(frozen=True)
class Entry:
    name: str  # the folder name: what `mailtrace grade NAME` and `exercises copy NAME` take
    directory: Path
    titles: dict[str, str]  # {"en": ..., "es": ...}
    points: float
    program: str
    statements: tuple[str, ...]  # README.md, README.es.md
    skeletons: tuple[str, ...]  # the program(s) to complete
    error: str = ""  # the exercise could not be loaded (the listing says why)

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles.get("en", "")


def student_files(directory: Path) -> list[Path]:
    """The files a student gets: everything at the top of the folder but the grader's data."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name not in GRADER_ONLY
                  and p.suffix not in (".pyc", ".pyo"))


def entry(name_or_path: str) -> Entry:
    directory = find_exercise(name_or_path)
    raw = _load_toml(directory / "exercise.toml")
    titles = {"en": raw.get("title", ""), "es": raw.get("title_es", "")}
    files = student_files(directory)
    statements = tuple(p.name for p in files if p.name.startswith("README"))
    skeletons = tuple(p.name for p in files if not p.name.startswith("README"))
    try:
        ex = load_exercise(str(directory))
    except ExerciseError as exc:
        return Entry(directory.name, directory, titles, 0.0, raw.get("program", ""), statements, skeletons, str(exc))
    # the folder's name is what `mailtrace grade NAME` looks up
    return Entry(directory.name, directory, titles, sum(c.points for c in ex.checks.values()), ex.program,
                 statements, skeletons)


def entries(root: Path | None = None) -> list[Entry]:
    root = exercises_root() if root is None else root
    return [entry(str(root / name)) for name in exercise_names(root)] if root else []


class CopyRefused(Exception):
    """Copying would overwrite files already in the folder (``existing``); nothing was written."""

    def __init__(self, existing: list[Path]) -> None:
        super().__init__(", ".join(p.name for p in existing))
        self.existing = existing


def copy(name_or_path: str, dest: Path) -> list[Path]:
    """Write the exercise's statement and skeleton(s) into ``dest`` (created if needed).

    All or nothing: when any of those files exists already in ``dest``, raise
    :class:`CopyRefused` before writing anything.
    """
    directory = find_exercise(name_or_path)
    files = student_files(directory)
    targets = [dest / p.name for p in files]
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing:
        raise CopyRefused(existing)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for source, target in zip(files, targets):
        with open(target, "xb") as out:  # "x": never replace a file that appeared meanwhile
            out.write(source.read_bytes())
        written.append(target)
    return written
