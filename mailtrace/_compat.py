"""What differs between the Python versions mailtrace supports (3.10 and newer).

``tomllib`` joined the standard library in Python 3.11; on 3.10 the ``tomli`` backport (the
same code, a dependency only there, see pyproject.toml) takes its place.  Import it from here:
``from mailtrace._compat import tomllib``.

``subprocess.Popen(process_group=0)`` is 3.11 too: :data:`NEW_PROCESS_GROUP` gives the child a
process group of its own (group id = its pid, so ``os.killpg(proc.pid, ...)`` reaches all of
it) on both, through a new session (setsid) on 3.10.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tests/test_py310.py under python3.10
    import tomli as tomllib

#: Popen keywords: the child leads a new process group
NEW_PROCESS_GROUP: dict = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}

__all__ = ["NEW_PROCESS_GROUP", "tomllib"]
