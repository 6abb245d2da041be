"""Starting an exercise anywhere (``mailtrace exercises``, ``exercises copy``), where exercises
are looked up, and the GitHub Classroom result's arithmetic (issue #21).  Fast: no wheel build
(tests/integration/test_wheel.py does the installed-tool session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrace.cli import main
from mailtrace.grading import github_classroom as gc
from mailtrace.grading.exercise import exercises_origin, load_exercise
from mailtrace.grading.report import CheckResult, Report, ScenarioResult

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_version_says_where_exercises_come_from():
    r = invoke("--version")
    root, origin = exercises_origin()
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("mailtrace, version ")
    assert f"exercises: {root} ({origin})" in r.output


def test_exercises_env_folder_comes_first(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "exercises" / "mime-compose", tmp_path / "ours")
    monkeypatch.setenv("MAILTRACE_EXERCISES", str(tmp_path))
    assert exercises_origin() == (tmp_path, "$MAILTRACE_EXERCISES")
    r = invoke("exercises")
    assert r.exit_code == 0, r.output
    assert "ours " in r.output and "smtp-client" not in r.output
    assert load_exercise("ours").directory == tmp_path / "ours"


def test_a_clone_finds_its_own_exercises(monkeypatch, tmp_path):
    import mailtrace

    if Path(mailtrace.__file__).resolve().parents[1] != ROOT:
        pytest.skip("mailtrace is imported from an installed wheel here, not from this checkout")
    monkeypatch.delenv("MAILTRACE_EXERCISES", raising=False)
    monkeypatch.chdir(tmp_path)  # not under the checkout: still its exercises
    assert exercises_origin() == (ROOT / "exercises", "source checkout")


@pytest.mark.parametrize("lang,word", [("en", "exercises"), ("es", "ejercicios")])
def test_listing_one_line_each(lang, word):
    r = invoke("exercises", "--lang", lang)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert word in lines[0]
    for name in ("smtp-client", "pop3-client", "imap-client", "mime-compose"):
        (line,) = [x for x in lines if x.startswith(name + " ")]
        points = sum(c.points for c in load_exercise(name).checks.values())
        assert "Python" in line and f"{points:g} " in line
    assert any("Un cliente SMTP" in x for x in lines) == (lang == "es")


def test_copy_writes_statement_and_skeleton_and_never_overwrites(tmp_path):
    dest = tmp_path / "work"
    r = invoke("exercises", "copy", "smtp-client", str(dest))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dest.iterdir()) == ["README.es.md", "README.md", "smtp_client.py"]
    assert (dest / "smtp_client.py").read_bytes() == (ROOT / "exercises/smtp-client/smtp_client.py").read_bytes()
    (dest / "smtp_client.py").write_text("# my work\n")
    (dest / "README.es.md").unlink()
    r = invoke("exercises", "copy", "smtp-client", str(dest), "--lang", "es")
    assert r.exit_code != 0 and "smtp_client.py" in r.output and "a salvo" in r.output
    assert (dest / "smtp_client.py").read_text() == "# my work\n" and not (dest / "README.es.md").exists()
    r = invoke("exercises", "--lang", "es", "copy", "smtp-client", str(dest))
    assert r.exit_code != 0 and "a salvo" in r.output
    r = invoke("exercises", "copy", "no-such-exercise", str(tmp_path / "x"))
    assert r.exit_code != 0 and "no exercise" in r.output and not (tmp_path / "x").exists()
    (tmp_path / "afile").write_text("")
    r = invoke("exercises", "copy", "smtp-client", str(tmp_path / "afile"))
    assert r.exit_code != 0 and "not a folder" in r.output


def test_copy_defaults_to_a_folder_named_after_the_exercise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("exercises", "copy", "pop3-client")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pop3-client" / "pop3_client.py").is_file()
    assert not (tmp_path / "pop3-client" / "exercise.toml").exists()  # the grader's data stays out


# ---------------------------------------------------------------------------- GitHub Classroom

def report(points: list[tuple[str, float, float, bool]], *, capped_to: float | None = None,
           error: str = "") -> Report:
    """A report of one scenario per check tuple (id, points, max_points, passed)."""
    r = Report(exercise="smtp-client", submission="smtp_client.py", seed=3)
    for i, (cid, p, m, ok) in enumerate(points):
        vis = "hidden" if cid == "smtp.secret" else "visible"
        r.scenarios.append(ScenarioResult(name=f"s{i}", checks=[CheckResult(cid, cid.title(), ok, p, m,
                                                                             "" if ok else f"{cid} went wrong", vis)]))
    r.finish()
    if capped_to is not None:
        r.score, r.capped = capped_to, "policy.imports failed"
    r.error = error
    return r


def test_split_cents_adds_up_exactly():
    for total, weights in [(100, [1, 1, 1]), (85.5, [5, 2, 3.3, 0]), (0, [1, 2]), (10, [0, 0]), (7.77, [1] * 9)]:
        parts = gc._split_cents(total, weights)
        assert len(parts) == len(weights)
        assert sum(parts) == (round(total * 100) if sum(weights) else 0)
        assert all(p == 0 for p, w in zip(parts, weights) if w == 0)


def test_result_scores_add_up_per_check_over_scenarios():
    r = report([("smtp.crlf", 2 / 3, 2 / 3, True), ("smtp.crlf", 2 / 3, 2 / 3, True), ("smtp.crlf", 0, 2 / 3, False),
                ("smtp.quit", 4, 4, True), ("smtp.secret", 0, 3, False)])
    result = gc.to_result(r, program="smtp_client.py")
    names = [t["name"] for t in result["tests"]]
    assert names == ["Smtp.Crlf (smtp.crlf)", "Smtp.Quit (smtp.quit)", "Smtp.Secret (smtp.secret)"]
    assert round(sum(t["score"] for t in result["tests"]), 2) == r.score == 5.33
    assert result["max_score"] == r.max_score and result["status"] == "fail"
    crlf, quit_, secret = result["tests"]
    assert crlf["status"] == "fail" and "[s2] smtp.crlf went wrong" in crlf["message"]
    assert quit_["status"] == "pass"
    assert "went wrong" not in secret["message"]  # hidden feedback stays hidden
    assert "--seed 3" in crlf["test_code"]
    json.dumps(result)  # serialisable as the runner emits it


def test_result_of_a_capped_or_broken_run():
    capped = report([("policy.imports", 0, 5, False), ("smtp.quit", 4, 4, True), ("smtp.crlf", 6, 6, True)],
                    capped_to=0.0)
    result = gc.to_result(capped)
    assert sum(t["score"] for t in result["tests"]) == 0 and result["status"] == "fail"
    assert any("capped" in t["message"] for t in result["tests"])
    half = report([("smtp.quit", 4, 4, True), ("smtp.crlf", 6, 6, True)], capped_to=5.0)
    assert round(sum(t["score"] for t in gc.to_result(half)["tests"]), 2) == 5.0
    broken = gc.to_result(report([], error="no smtp_client.py in the submission"))
    assert broken["status"] == "error" and broken["tests"][0]["status"] == "error"
    assert "smtp_client.py" in broken["tests"][0]["message"] and broken["tests"][0]["score"] == 0


def test_workflow_needs_a_name_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "classroom.yml"
    r = invoke("classroom-workflow", "smtp-client", "--install", "mailtrace==0.1.0", "-o", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "name: Autograding Tests" in text and "mailtrace grade 'smtp-client' 'smtp_client.py'" in text
    r = invoke("classroom-workflow", "smtp-client", "--install", "mailtrace==0.1.0", "-o", str(out))
    assert r.exit_code != 0 and "--force" in r.output
    r = invoke("classroom-workflow", str(ROOT / "exercises" / "smtp-client"), "--install", "x", "-o", "-")
    assert r.exit_code != 0 and "exercise name" in r.output
    r = invoke("classroom-workflow", "smtp-client", "-o", "-")
    assert r.exit_code != 0 and "--install" in r.output


def test_classroom_workflow_warns_about_an_unpinned_install(tmp_path):
    """A bare 'mailtrace' on the package index may be another project (independent check)."""
    import subprocess
    import sys

    def run(spec: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mailtrace", "classroom-workflow", "smtp-client", "--install", spec,
                               "-o", str(tmp_path / f"wf{len(spec)}.yml")], capture_output=True, text=True, timeout=60)

    bare = run("mailtrace")
    assert bare.returncode == 0 and "names no version" in bare.stderr
    pinned = run("mailtrace==0.1.0")
    assert pinned.returncode == 0 and "names no version" not in pinned.stderr
