"""Build a Gradescope autograder zip for one exercise.

Gradescope's contract (https://gradescope-autograders.readthedocs.io/en/latest/specs/): the zip
holds ``setup.sh`` (run once, as root, on their Ubuntu image, to build the image) and
``run_autograder`` (run per submission: the submission is in ``/autograder/submission``, the
results go to ``/autograder/results/results.json``).  The zip unpacks into
``/autograder/source``.  We ship the mailtrace package source and the exercise folder in it, so
the image grades offline with the same code the instructor ran locally.

``MAILTRACE_AUTOGRADER_ROOT`` (default ``/autograder``) and ``MAILTRACE_BIN`` (default the
venv ``setup.sh`` makes) let a test run ``run_autograder`` against a fake root.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image setup (Ubuntu 22.04 or 24.04 base images): a Python that mailtrace supports
# (>= {need}), bubblewrap for the sealed sandbox, the compilers and interpreters the exercise
# statements promise to submissions (cc and make, java and javac, node, bash), then mailtrace
# from the bundled source.
# Ubuntu 22.04 ships Python 3.10: when the image's python3 is too old we install one from the
# deadsnakes PPA, or failing that with uv (a standalone CPython build).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
NEED="{need}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates curl util-linux iproute2 \\
    bubblewrap gcc libc6-dev make default-jdk-headless nodejs >/dev/null
ok() {{ "$1" -c "import sys; sys.exit(0 if sys.version_info >= tuple(map(int, '$NEED'.split('.'))) else 1)" 2>/dev/null; }}
PY=python3
if ! ok "$PY"; then
  for v in 3.13 3.12 3.11; do
    if command -v "python$v" >/dev/null && ok "python$v"; then PY="python$v"; break; fi
  done
fi
if ! ok "$PY" && grep -qi ubuntu /etc/os-release; then
  apt-get install -y -qq --no-install-recommends software-properties-common gpg-agent >/dev/null || true
  if add-apt-repository -y ppa:deadsnakes/ppa >/dev/null 2>&1 && apt-get update -qq \\
     && apt-get install -y -qq --no-install-recommends python3.12 python3.12-venv >/dev/null; then
    PY=python3.12
  fi
fi
if ok "$PY"; then
  "$PY" -m venv /autograder/venv
else
  curl -LsSf https://astral.sh/uv/install.sh | env UV_INSTALL_DIR=/usr/local/bin sh
  uv venv --seed --python 3.12 /autograder/venv
fi
/autograder/venv/bin/python -m pip install -q /autograder/source/mailtrace-src
/autograder/venv/bin/mailtrace --help >/dev/null
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission.
ROOT="${{MAILTRACE_AUTOGRADER_ROOT:-/autograder}}"
BIN="${{MAILTRACE_BIN:-$ROOT/venv/bin/mailtrace}}"
mkdir -p "$ROOT/results"
cd "$ROOT/source"
"$BIN" grade "$ROOT/source/exercise" "$ROOT/submission" --format gradescope \\
    -o "$ROOT/results/results.json" --jobs {jobs} --network auto --lang {lang}
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  printf '{{"score": 0, "output": "{failed}"}}\\n' "$status" \\
    > "$ROOT/results/results.json"
fi
exit 0
"""


def required_python(pyproject: Path) -> str:
    """The lowest Python version mailtrace supports ("3.11"), read from pyproject.toml."""
    import re

    try:
        text = pyproject.read_text("utf-8")
    except OSError:
        return "3.11"
    m = re.search(r'requires-python\s*=\s*">=\s*(\d+\.\d+)', text)
    return m.group(1) if m else "3.11"


def build(exercise_dir: Path, output: Path, *, jobs: int = 2, lang: str = "en") -> list[str]:
    """Write the zip; returns the names it holds."""
    import mailtrace

    package = Path(mailtrace.__file__).resolve().parent
    project = package.parent
    names = []
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as z:
        def add_text(name: str, text: str, mode: int = 0o644) -> None:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
            names.append(name)

        add_text("setup.sh", SETUP_SH.format(need=required_python(project / "pyproject.toml")), 0o755)
        from mailtrace.grading.checks import text

        failed = text("gradescope.failed", lang).replace("'", "")  # inside a shell '...' and a JSON "..."
        add_text("run_autograder", RUN_AUTOGRADER.format(jobs=jobs, lang=lang, failed=failed), 0o755)
        for path in sorted(exercise_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                name = "exercise/" + str(path.relative_to(exercise_dir))
                z.write(path, name)
                names.append(name)
        for path in sorted(package.rglob("*")):
            if path.relative_to(package).parts[0] == "exercises":
                continue  # an installed wheel's copy of the exercises: the zip has exercise/ already
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".toml", ".css", ".js",
                                                                                      ".html", ".md"):
                name = "mailtrace-src/mailtrace/" + str(path.relative_to(package))
                z.write(path, name)
                names.append(name)
        if (project / "pyproject.toml").is_file():  # a clone (or an editable install)
            for extra in ("pyproject.toml", "README.md"):
                if (project / extra).is_file():
                    z.write(project / extra, f"mailtrace-src/{extra}")
                    names.append(f"mailtrace-src/{extra}")
        else:  # installed from a wheel: describe the installed package
            add_text("mailtrace-src/pyproject.toml", installed_pyproject())
    return names


INSTALLED_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mailtrace"
version = {version}
requires-python = ">=3.10"
dependencies = {dependencies}

[project.scripts]
mailtrace = "mailtrace.cli:main"

[tool.setuptools.packages.find]
include = ["mailtrace*"]

[tool.setuptools.package-data]
"*" = ["*.toml", "*.css", "*.js", "*.html"]
"""


def installed_pyproject() -> str:
    """A pyproject.toml for the installed mailtrace's source (name, version, dependencies)."""
    import json
    from importlib import metadata

    requires = [r for r in metadata.requires("mailtrace") or [] if "extra ==" not in r]
    return INSTALLED_PYPROJECT.format(version=json.dumps(metadata.version("mailtrace")),
                                      dependencies=json.dumps(requires))
