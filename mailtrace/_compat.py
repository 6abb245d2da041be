"""What differs between the Python versions mailtrace supports (3.10 and newer).

``tomllib`` joined the standard library in Python 3.11; on 3.10 the ``tomli`` backport (the
same code, a dependency only there, see pyproject.toml) takes its place.  Import it from here:
``from mailtrace._compat import tomllib``.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tests/test_py310.py under python3.10
    import tomli as tomllib

__all__ = ["tomllib"]
