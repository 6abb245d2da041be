"""Exercises and scenarios as data: ``exercises/<name>/exercise.toml`` + ``scenarios/*.toml``.

An instructor edits these files, never Python.  ``exercise.toml`` says which program a
submission must contain, which imports are banned and how many points each check is worth::

    name = "smtp-client"
    protocol = "smtp"                 # the scripted server to run ("" for none: mime-compose)
    program = "smtp_client.py"
    banned_imports = ["smtplib"]
    [checks."smtp.crlf"]
    points = 2
    visibility = "visible"            # visible | hidden | after_due_date

Each ``scenarios/*.toml`` holds ``[[scenario]]`` tables: the program's arguments and input
files (with ``{placeholders}`` filled from data randomised per run), the server script (faults,
see :mod:`mailtrace.grading.faults`), the mailbox fixture, the exit status expected and the
checks that apply.  See exercises/README.md for every field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailtrace._compat import tomllib
from mailtrace.grading.faults import ServerScript

VISIBILITIES = ("visible", "hidden", "after_due_date")
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class ExerciseError(Exception):
    """An exercise or scenario file is wrong (the message says where).

    Its words are data: ``key`` names a message of the grading book (``exercise.*``), filled
    with ``fields``; ``str()`` is the English, :meth:`text` any language (``grade --lang``)."""

    def __init__(self, key: str, /, **fields: object) -> None:
        self.key, self.fields = key, fields
        super().__init__(self.text())  # English

    def text(self, lang: str = "en") -> str:
        from mailtrace.knowledge import messages

        return messages.text("grading", self.key, lang, **self.fields)


@dataclass(frozen=True)
class CheckConfig:
    id: str
    points: float = 1.0
    visibility: str = "visible"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # input files: name -> template
    binary_files: dict[str, str] = field(default_factory=dict)  # name -> data variable (bytes)
    expect_exit: int | None = 0
    checks: tuple[str, ...] = ()
    timeout: float | None = None
    server: dict[str, Any] = field(default_factory=dict)  # ServerScript (templated)
    mailbox: dict[str, Any] = field(default_factory=dict)  # fixture (templated)
    options: dict[str, Any] = field(default_factory=dict)  # anything else checks may read


@dataclass
class Exercise:
    name: str
    directory: Path
    protocol: str
    program: str
    title: str = ""
    banned_imports: tuple[str, ...] = ()
    timeout: float = 10.0
    checks: dict[str, CheckConfig] = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)
    policy_checks: tuple[str, ...] = ()
    policy_cap: float | None = None  # a failed policy check caps the score at this fraction of max
    role: str = "client"  # "server": the student writes the server, the grader is the client (grading/servers)

    def scenario(self, name: str) -> Scenario:
        for s in self.scenarios:
            if s.name == name:
                return s
        raise KeyError(name)


#: the contracts' read timeout: "a read times out after 10 s" (../shared/contracts.md)
CLIENT_READ_TIMEOUT = 10.0
#: the least time a scenario with a silent server gives the program: its read timeout, then
#: QUIT/LOGOUT and a wait for that reply with the same timeout (RFC 5321 §4.1.1.10: the
#: client waits for the QUIT reply; the silent server never sends it), plus room to start
SILENT_TIMEOUT = 2 * CLIENT_READ_TIMEOUT + 10.0


#: a folder of exercises that takes the place of the built-in ones (an instructor's collection)
EXERCISES_ENV = "MAILTRACE_EXERCISES"


def exercises_origin() -> tuple[Path | None, str]:
    """Where exercises are looked up by name, and why there (``mailtrace --version`` says it).

    In this order: the folder named by $MAILTRACE_EXERCISES; a clone's ``exercises/`` beside
    the package (a clone or an editable install: the source the instructor edits); the copy a
    wheel carries in the package (setup.py puts it there); ``exercises/`` in the current folder.
    """
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    candidates = []
    if os.environ.get(EXERCISES_ENV):
        candidates.append((Path(os.environ[EXERCISES_ENV]).expanduser(), f"${EXERCISES_ENV}"))
    if (checkout / "pyproject.toml").is_file():
        candidates.append((checkout / "exercises", "source checkout"))
    candidates += [(package / "exercises", "installed with mailtrace"), (Path.cwd() / "exercises", "current folder")]
    for candidate, origin in candidates:
        if candidate.is_dir():
            return candidate, origin
    return None, "none found"


def exercises_root() -> Path | None:
    """The folder holding the exercises that are looked up by name (see :func:`exercises_origin`)."""
    return exercises_origin()[0]


def exercise_names(root: Path | None = None) -> list[str]:
    """The exercises in ``root`` (default: :func:`exercises_root`), sorted by name."""
    root = exercises_root() if root is None else root
    return sorted(p.name for p in root.iterdir() if (p / "exercise.toml").is_file()) if root else []


def find_exercise(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if (path / "exercise.toml").is_file():
        return path
    root = exercises_root()
    if root is not None and (root / name_or_path / "exercise.toml").is_file():
        return root / name_or_path
    known = exercise_names(root)
    if known:
        raise ExerciseError("exercise.unknown-known", name=name_or_path, known=", ".join(known))
    raise ExerciseError("exercise.unknown", name=name_or_path)


def load_exercise(name_or_path: str) -> Exercise:
    directory = find_exercise(name_or_path)
    data = _load_toml(directory / "exercise.toml")
    checks = {}
    for cid, conf in data.get("checks", {}).items():
        vis = conf.get("visibility", "visible")
        if vis not in VISIBILITIES:
            raise ExerciseError("exercise.bad-visibility", path=directory / "exercise.toml", check=cid,
                                choices=", ".join(VISIBILITIES))
        checks[cid] = CheckConfig(cid, float(conf.get("points", 1)), vis)
    ex = Exercise(name=data.get("name", directory.name), directory=directory, protocol=data.get("protocol", ""),
                  program=data["program"], title=data.get("title", ""),
                  banned_imports=tuple(data.get("banned_imports", ())), timeout=float(data.get("timeout", 10)),
                  checks=checks, policy_checks=tuple(data.get("policy_checks", ())),
                  policy_cap=float(data["policy_cap"]) if "policy_cap" in data else None,
                  role=data.get("role", "client"))
    if ex.policy_cap is not None and not 0 <= ex.policy_cap <= 1:
        raise ExerciseError("exercise.bad-policy-cap", path=directory / "exercise.toml")
    from mailtrace.grading.checks import load_all

    REGISTRY = load_all()
    for cid in checks:
        if cid not in REGISTRY:
            raise ExerciseError("exercise.unknown-check", path=directory / "exercise.toml", check=cid)
    for path in sorted((directory / "scenarios").glob("*.toml")):
        for raw in _load_toml(path).get("scenario", []):
            sc = _scenario(raw, path)
            for cid in sc.checks:
                if cid not in REGISTRY:
                    raise ExerciseError("exercise.scenario-unknown-check", path=path, scenario=sc.name, check=cid)
                if cid not in checks:
                    raise ExerciseError("exercise.scenario-check-no-points", path=path, scenario=sc.name, check=cid)
            script = ServerScript.from_dict(sc.server)  # fail early on a bad fault
            if any(f.action == "silence" for f in script.faults) and (sc.timeout or ex.timeout) < SILENT_TIMEOUT:
                sc = replace(sc, timeout=SILENT_TIMEOUT)
            ex.scenarios.append(sc)
    names = [s.name for s in ex.scenarios]
    if len(set(names)) != len(names):
        raise ExerciseError("exercise.duplicate-scenarios", path=directory)
    return ex


def _scenario(raw: dict, path: Path) -> Scenario:
    known = set(Scenario.__dataclass_fields__)
    try:
        base = {k: v for k, v in raw.items() if k in known}
        options = {k: v for k, v in raw.items() if k not in known}
        base["args"] = tuple(base.get("args", ()))
        base["checks"] = tuple(base.get("checks", ()))
        if "expect_exit" in base and base["expect_exit"] == -1:
            base["expect_exit"] = None
        return Scenario(**base, options=options)
    except TypeError as exc:
        raise ExerciseError("exercise.bad-file", path=path, error=exc) from None


def _load_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExerciseError("exercise.bad-file", path=path, error=exc) from None


def fill(value: Any, variables: dict[str, Any]) -> Any:
    """Replace ``{name}`` placeholders in strings (recursively); unknown ones stay as they are."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), value)
    if isinstance(value, list):
        return [fill(v, variables) for v in value]
    if isinstance(value, tuple):
        return tuple(fill(v, variables) for v in value)
    if isinstance(value, dict):
        return {fill(k, variables): fill(v, variables) for k, v in value.items()}
    return value
