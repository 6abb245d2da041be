"""How the tests run the mailtrace program: always as ``sys.executable -m mailtrace``.

Never from PATH or from an absolute path of one machine: the README's test command
(``.venv/bin/python -m pytest -q``) does not put the venv's ``bin/`` on PATH, and a fresh clone
has no other venv.  Some tests need a *command name* rather than an argv (the handouts' shell
blocks type ``mailtrace show ...``; the Gradescope bundle's ``MAILTRACE_BIN``): for them,
``shim_dir()`` holds an executable ``mailtrace`` that runs this same interpreter with ``-m``.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

MAILTRACE = [sys.executable, "-m", "mailtrace"]

_SHIM: Path | None = None


def shim_dir() -> Path:
    """A folder holding an executable ``mailtrace`` that runs ``sys.executable -m mailtrace``."""
    global _SHIM
    if _SHIM is None:
        folder = Path(tempfile.mkdtemp(prefix="mailtrace-shim-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        script = folder / "mailtrace"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mailtrace "$@"\n')
        script.chmod(0o755)
        _SHIM = folder
    return _SHIM


def shim() -> Path:
    """The shim's path, for places that take one program path (``MAILTRACE_BIN``)."""
    return shim_dir() / "mailtrace"
