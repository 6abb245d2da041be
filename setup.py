"""Build step that puts the exercises in the package: ``exercises/`` -> ``mailtrace/exercises/``.

Everything else about the package is declared in pyproject.toml.  The top-level ``exercises/``
folder stays the one source (instructors edit it in a clone); a wheel built from a clone or an
sdist carries a copy as package data, so ``mailtrace grade smtp-client ...`` works wherever the
wheel is installed.  ``solutions/`` is never copied (and MANIFEST.in keeps it out of the sdist).
An editable install copies nothing: the lookup (mailtrace/grading/exercise.py) finds
``exercises/`` beside the package in the checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE = Path(__file__).resolve().parent / "exercises"
TARGET = Path("mailtrace") / "exercises"


def _exercise_files() -> list[Path]:
    if not SOURCE.is_dir():
        return []
    return sorted(p for p in SOURCE.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
                  and p.suffix not in (".pyc", ".pyo"))


class build_py_with_exercises(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / TARGET
        shutil.rmtree(target, ignore_errors=True)  # no stale file from an earlier build
        for path in _exercise_files():
            dest = target / path.relative_to(SOURCE)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib) / TARGET
        return outputs + [str(target / p.relative_to(SOURCE)) for p in _exercise_files()]


setup(cmdclass={"build_py": build_py_with_exercises})
