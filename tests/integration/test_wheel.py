"""mailtrace installed the way people install tools: from the wheel, in a fresh virtual
environment outside the checkout, run from an empty folder (issue #21).

One session fixture builds the wheel (``pip wheel . --no-deps``) and the sdist from a copy of
the checkout and installs the wheel in a fresh venv; the tests then play a student (list the
exercises, copy one, grade a program) and an instructor (the Gradescope bundle, the GitHub
Classroom result and workflow, whose ``run:`` steps are executed here in order in a clean venv).
No test may find a file of ``solutions/`` in the wheel or the sdist.

Building and installing need the package index (pip's cache makes it quick after the first run).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
MIME_SOLUTION = SOLUTIONS / "mime-compose" / "mime_compose.py"
#: a mime-compose program that loses points (no Date or Message-ID): the scores must still add up
MIME_DEFECTIVE = "mime/missing_headers.py"  # written by the ``defective`` fixture (tests/defects.py)
#: the checkout's own folders that are not part of a build
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
              "mailtrace-lab", ".mypy_cache", ".ruff_cache")
#: package files a user's install must carry (code, data, web assets)
SHIPPED_SUFFIXES = (".py", ".toml", ".html", ".js", ".css", ".svg")

pytestmark = pytest.mark.timeout(900)


def run(cmd: list, *, cwd: Path, env: dict | None = None, timeout: float = 600, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def clean_env(**extra: str) -> dict:
    """The environment minus anything that would point Python back at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAILTRACE_EXERCISES", "PYTHONSAFEPATH")}
    env.update(extra)
    return env


def make_venv(path: Path, python: str | None = None) -> Path:
    """A fresh virtual environment (by ``python`` when given); returns its interpreter."""
    if python is None:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    else:
        run([python, "-m", "venv", "--clear", path], cwd=path.parent)
    return path / "bin" / "python"


def pip_install(python: Path, *specs: str | Path, cwd: Path) -> None:
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *specs], cwd=cwd, env=clean_env())


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built once from a copy of the checkout (solutions/ included in the
    copy on purpose: the build must leave it out)."""
    base = tmp_path_factory.mktemp("build")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE), symlinks=True)
    dist = base / "dist"
    run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--disable-pip-version-check", "-q",
         "-w", dist], cwd=source, env=clean_env())
    pytest.importorskip("build", reason="the sdist is built with the 'build' package (pip install -e '.[test]')")
    run([sys.executable, "-m", "build", "--sdist", "--outdir", dist, "."], cwd=source, env=clean_env())
    wheels, sdists = list(dist.glob("mailtrace-*.whl")), list(dist.glob("mailtrace-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; returns its python."""
    python = make_venv(tmp_path_factory.mktemp("tool") / "venv")
    pip_install(python, built["wheel"], cwd=python.parent)
    return python


@pytest.fixture
def empty(tmp_path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def mailtrace(python: Path, *args: str, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    return run([python, "-m", "mailtrace", *args], cwd=cwd, env=clean_env(**env), check=check)


# ---------------------------------------------------------------------------- what is inside

def archive_members(path: Path) -> dict[str, bytes]:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    with tarfile.open(path) as t:
        return {m.name.split("/", 1)[1]: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def solution_leaks(members: dict[str, bytes]) -> list[str]:
    """Members that are a solution by name (a solutions/ folder) or by content (a solution's text)."""
    solutions = [p for p in SOLUTIONS.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                 and p.stat().st_size > 0 and p.name != ".keep"]
    assert solutions, "no solutions/ to compare with"
    leaks = [n for n in members if "solutions" in Path(n).parts]
    for name, data in members.items():
        for sol in solutions:
            body = sol.read_bytes().strip()
            if body and body in data:
                leaks.append(f"{name} holds {sol.relative_to(ROOT)}")
    return leaks


def test_the_leak_check_finds_a_solution_by_name_and_by_content():
    sol = MIME_SOLUTION.read_bytes()
    members = {"mailtrace/exercises/mime-compose/mime_compose.py": sol,
               "mailtrace/solutions/notes.md": b"x", "mailtrace/ok.py": b"print('hello')\n"}
    leaks = solution_leaks(members)
    assert any("mime_compose.py holds" in x for x in leaks) and "mailtrace/solutions/notes.md" in leaks
    assert not any(x.startswith("mailtrace/ok.py") for x in leaks)


def exercise_files() -> list[Path]:
    return [p.relative_to(ROOT / "exercises") for p in (ROOT / "exercises").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_archives_carry_exercises_and_data_never_solutions(built, kind):
    members = archive_members(built[kind])
    inside = "mailtrace/exercises/" if kind == "wheel" else "exercises/"
    missing = [str(p) for p in exercise_files() if inside + p.as_posix() not in members]
    assert not missing, f"exercise files missing from the {kind}: {missing}"
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "mailtrace").rglob("*")
               if p.is_file() and p.suffix in SHIPPED_SUFFIXES and "__pycache__" not in p.parts]
    assert [p for p in shipped if p not in members] == []
    assert solution_leaks(members) == []
    # the skeletons are there, and they are not the solutions (by content)
    for sol in SOLUTIONS.glob("*/*.py"):
        skeleton = members[f"{inside}{sol.parent.name}/{sol.name}"]
        assert skeleton != sol.read_bytes()


def test_wheel_metadata_supports_python_310(built):
    with zipfile.ZipFile(built["wheel"]) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Python: >=3.10" in meta
    assert re.search(r'Requires-Dist: tomli.*; python_version < "3.11"', meta), meta


# ---------------------------------------------------------------------------- a student

def test_student_lists_copies_and_grades_from_an_empty_folder(installed, empty):
    version = mailtrace(installed, "--version", cwd=empty).stdout
    venv_dir = installed.parent.parent
    assert "installed with mailtrace" in version and str(venv_dir) in version, version
    listing = mailtrace(installed, "exercises", cwd=empty).stdout
    for name in ("smtp-client", "pop3-client", "imap-client", "mime-compose"):
        assert re.search(rf"^{name}\s+Python\s+100 pts\s+\w+\.py: ", listing, re.M), listing
    assert "ejercicios" in mailtrace(installed, "exercises", "--lang", "es", cwd=empty).stdout

    out = mailtrace(installed, "exercises", "copy", "mime-compose", cwd=empty).stdout
    folder = empty / "mime-compose"
    assert sorted(p.name for p in folder.iterdir()) == ["README.es.md", "README.md", "mime_compose.py"], out
    assert "mailtrace grade mime-compose mime_compose.py" in out
    # the student's work is never overwritten, and nothing is written when refused
    (folder / "mime_compose.py").write_bytes(MIME_SOLUTION.read_bytes())
    (folder / "README.md").unlink()
    again = mailtrace(installed, "exercises", "copy", "mime-compose", cwd=empty, check=False)
    assert again.returncode != 0 and "mime_compose.py" in again.stderr and "Traceback" not in again.stderr
    assert (folder / "mime_compose.py").read_bytes() == MIME_SOLUTION.read_bytes()
    assert not (folder / "README.md").exists()
    graded = mailtrace(installed, "grade", "mime-compose", "mime_compose.py", "--format", "text", "--network", "host",
                       cwd=folder)
    assert "score 100 / 100" in graded.stdout, graded.stdout
    # and an instructor's own exercise folder keeps working by path
    own = empty / "my-exercise"
    site_ex = run([installed, "-c", "import mailtrace, pathlib; print(pathlib.Path(mailtrace.__file__).parent"
                   " / 'exercises' / 'mime-compose')"], cwd=empty).stdout.strip()
    shutil.copytree(site_ex, own)
    graded = mailtrace(installed, "grade", str(own), str(folder / "mime_compose.py"), "--format", "text",
                       "--network", "host", cwd=empty)
    assert "score 100 / 100" in graded.stdout


# ---------------------------------------------------------------------------- an instructor

def test_gradescope_bundle_from_the_wheel_runs_as_gradescope_runs_it(installed, empty):
    zpath = empty / "autograder.zip"
    mailtrace(installed, "gradescope", "mime-compose", "-o", str(zpath), cwd=empty)
    with zipfile.ZipFile(zpath) as z:
        members = {n: z.read(n) for n in z.namelist()}
    assert {"setup.sh", "run_autograder", "exercise/exercise.toml", "mailtrace-src/pyproject.toml",
            "mailtrace-src/mailtrace/cli/__init__.py"} <= set(members)
    assert solution_leaks(members) == []
    root = empty / "autograder"
    zipfile.ZipFile(zpath).extractall(root / "source")
    # setup.sh installs mailtrace-src: it must build (the pyproject describes the installed package)
    run([installed, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", empty / "gs-dist",
         root / "source" / "mailtrace-src"], cwd=empty, env=clean_env())
    (root / "submission").mkdir()
    shutil.copy(MIME_SOLUTION, root / "submission" / "mime_compose.py")
    env = clean_env(MAILTRACE_AUTOGRADER_ROOT=str(root), MAILTRACE_BIN=str(installed.parent / "mailtrace"))
    run(["bash", root / "source" / "run_autograder"], cwd=empty, env=env)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 100 and results["tests"]


def classroom_total(result: dict) -> tuple[float, float]:
    """What Classroom's reporter computes: the sum of the tests' scores, out of max_score."""
    return sum(t["score"] for t in result["tests"]), result["max_score"]


@pytest.mark.parametrize("which", ["solution", "defective"])
def test_github_classroom_result_from_the_wheel(installed, empty, which, defective):
    program = MIME_SOLUTION if which == "solution" else defective[MIME_DEFECTIVE]
    shutil.copy(program, empty / "mime_compose.py")
    args = ("grade", "mime-compose", "mime_compose.py", "--seed", "7", "--network", "host")
    mine = json.loads(mailtrace(installed, *args, "--format", "json", cwd=empty).stdout)
    out = mailtrace(installed, *args, "--format", "github-classroom", cwd=empty).stdout
    result = json.loads(out)
    assert result["version"] == 1 and set(result) >= {"status", "max_score", "tests"}
    for t in result["tests"]:
        assert {"name", "status", "score", "message"} <= set(t) and t["status"] in ("pass", "fail", "error")
    total, max_score = classroom_total(result)
    assert round(total, 2) == mine["score"] and max_score == mine["max_score"] == 100
    assert result["status"] == ("pass" if mine["score"] == 100 else "fail")
    if which == "defective":
        assert mine["score"] < 100 and any(t["status"] == "fail" and t["message"] for t in result["tests"])
    # the runner step emits base64 of this JSON; the reporter decodes it back
    encoded = base64.b64encode(out.encode("utf-8")).decode("ascii")
    assert json.loads(base64.b64decode(encoded).decode("utf-8")) == result


def test_classroom_workflow_steps_run_in_order_in_a_clean_venv(built, installed, tmp_path, defective):
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the workflow (pip install -e '.[test]')")
    repo = tmp_path / "template-repo"
    repo.mkdir()
    mailtrace(installed, "classroom-workflow", "mime-compose", "--install", str(built["wheel"]), "--lang", "es",
              cwd=repo)
    flow = yaml.safe_load((repo / ".github" / "workflows" / "classroom.yml").read_text())
    assert flow["name"] == "Autograding Tests" and set(flow["on"]) == {"push", "repository_dispatch"}
    steps = flow["jobs"]["run-autograding-tests"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses == ["actions/checkout", "actions/setup-python", "", "",
                    "classroom-resources/autograding-grading-reporter"]
    grade_step, reporter = steps[3], steps[4]
    runner = reporter["with"]["runners"]
    assert runner == grade_step["id"] and re.fullmatch(r"[a-z0-9]+", runner)
    assert reporter["env"] == {f"{runner.upper()}_RESULTS": f"${{{{ steps.{runner}.outputs.result }}}}"}

    # the student's push: the program in the repository; then every run: step, in order
    shutil.copy(defective[MIME_DEFECTIVE], repo / "mime_compose.py")
    clean = make_venv(tmp_path / "runner-venv")
    bindir = str(clean.parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "mailtrace").exists()]
    output_file, runner_temp = tmp_path / "github_output", tmp_path / "runner_temp"
    output_file.touch()
    runner_temp.mkdir()
    env = clean_env(PATH=os.pathsep.join([bindir, *path]), GITHUB_OUTPUT=str(output_file),
                    RUNNER_TEMP=str(runner_temp))
    logs = []
    for step in steps:
        if "run" in step:
            proc = run(["bash", "-e", "-c", step["run"]], cwd=repo, env=env)  # Actions' default shell
            logs.append(proc.stdout)
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
    result = json.loads(base64.b64decode(outputs["result"]).decode("utf-8"))
    printed = re.search(r"mailtrace grade mime-compose: ([\d.]+) / ([\d.]+) puntos \(semilla (\d+)", logs[-1])
    assert printed, logs[-1]
    total, max_score = classroom_total(result)
    assert round(total, 2) == float(printed.group(1)) and max_score == float(printed.group(2)) == 100
    assert 0 < total < 100 and result["status"] == "fail"
    # the same seed, graded again by hand, gives the same score
    again = json.loads(mailtrace(clean, "grade", "mime-compose", "mime_compose.py", "--seed", printed.group(3),
                                 "--format", "json", "--network", "host", cwd=repo).stdout)
    assert again["score"] == round(total, 2)
    # a push without the program: Classroom still gets a result, an error that says what is missing
    (repo / "mime_compose.py").unlink()
    output_file.write_text("")
    run(["bash", "-e", "-c", grade_step["run"]], cwd=repo, env=env)
    outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
    broken = json.loads(base64.b64decode(outputs["result"]).decode("utf-8"))
    assert broken["status"] == "error" and broken["max_score"] == 100
    assert "mime_compose.py" in broken["tests"][0]["message"] and classroom_total(broken)[0] == 0


# ---------------------------------------------------------------------------- Python 3.10

#: pure-Python unit tests (no external programs) that must pass on 3.10 as well, and the STARTTLS
#: servers and proxy (mailtrace._compat.start_tls stands in for 3.11's StreamWriter.start_tls)
PY310_UNITS = ["test_smtp_server.py", "test_proxy_tls.py", "test_lines.py", "test_smtp_core.py", "test_pop3_core.py",
               "test_imap_core.py", "test_knowledge.py", "test_transcript.py", "test_smtp_observer.py",
               "test_cli_netaddr.py", "test_grading_units.py", "test_exercises_cli.py"]


def python310() -> str | None:
    """A working python3.10: on PATH, or one pyenv installed (the machine's ``pyenv versions``)."""
    candidates = [shutil.which("python3.10")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.10*/bin/python3.10"))
    for c in candidates:
        if c and subprocess.run([c, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                capture_output=True).returncode == 0:
            return c
    return None


def test_python310_imports_everything_and_passes_the_pure_units(built, tmp_path):
    py310 = python310()
    if py310 is None:
        pytest.skip("no python3.10 installed (on PATH or under pyenv): the 3.10 check cannot run here")
    python = make_venv(tmp_path / "venv310", py310)
    pip_install(python, built["wheel"], "pytest>=8", "pytest-timeout>=2", "hypothesis>=6", "aiosmtpd>=1.4",
                cwd=tmp_path)
    where = run([python, "-c", "import mailtrace; from mailtrace._compat import tomllib; "
                 "print(mailtrace.__file__, tomllib.__name__)"], cwd=tmp_path).stdout
    assert where.split()[1] == "tomli"  # the backport, installed by the conditional dependency
    assert str(tmp_path / "venv310") in where  # the installed wheel, not the checkout
    # every module imports (compiles, and no 3.11-only name at import time)
    run([python, "-c", "import importlib, pkgutil, mailtrace\n"
         "for m in pkgutil.walk_packages(mailtrace.__path__, 'mailtrace.'):\n"
         "    if m.name != 'mailtrace.__main__':\n"
         "        importlib.import_module(m.name)\n"], cwd=tmp_path)
    units = [str(path) for name in PY310_UNITS for path in ROOT.glob(f"tests/*/{name}")]
    assert len(units) == len(PY310_UNITS), units
    proc = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ROOT, *units],
               cwd=tmp_path, env=clean_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)


def test_no_311_only_import_outside_the_compat_module():
    """Where python3.10 is missing, at least the known 3.11-only names stay behind mailtrace._compat."""
    found = []
    for path in sorted((ROOT / "mailtrace").rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if (re.match(r"\s*(import tomllib|from tomllib )", line) or "process_group=" in line
                    or re.search(r"writer\.start_tls\(|asyncio\.(timeout|Runner|TaskGroup)\b", line)):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "use mailtrace._compat (Python 3.10):\n" + "\n".join(found)
