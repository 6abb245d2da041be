"""``mailtrace classroom-workflow``: the GitHub Actions workflow that grades an exercise in
GitHub Classroom (see mailtrace/grading/github_classroom.py)."""

from __future__ import annotations

import re
from pathlib import Path

import click


@click.command(name="classroom-workflow")
@click.argument("exercise")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path(".github/workflows/classroom.yml"),
              show_default=True, help="Where to write the workflow ('-' for stdout).")
@click.option("--install", "install", required=True, metavar="SPEC",
              help="What the runner pip-installs: a pinned wheel URL, 'mailtrace @ git+https://HOST/REPO@TAG', "
                   "or 'mailtrace==VERSION' from your package index.")
@click.option("--program", help="The student's program in the repository [default: the exercise's, e.g. smtp_client.py].")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the feedback students read in the Actions log.")
@click.option("--python", "python", default="3.12", show_default=True, help="Python version on the runner.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
def command(exercise: str, output: Path, install: str, program: str | None, lang: str, python: str,
            force: bool) -> None:
    """Write the GitHub Classroom workflow for EXERCISE (checkout, Python, mailtrace, grade, report).

    \b
    Example (in the assignment's template repository):
      mailtrace classroom-workflow smtp-client \\
          --install 'mailtrace @ https://example.org/mailtrace-0.1.0-py3-none-any.whl'
    Each push grades the program; Classroom gets the points, the student reads the feedback.
    EXERCISE is a name: the runner must have the same exercise (the one its mailtrace carries).
    """
    from mailtrace.grading.exercise import ExerciseError, load_exercise
    from mailtrace.grading.github_classroom import workflow
    from mailtrace.knowledge.messages import text

    if (Path(exercise) / "exercise.toml").is_file():
        raise click.ClickException(f"{exercise} is a folder: the workflow grades on GitHub's runner, which has the "
                                   "exercises its mailtrace was built with; give an exercise name "
                                   "(see `mailtrace exercises`).")
    try:
        ex = load_exercise(exercise)
    except ExerciseError as exc:
        raise click.ClickException(exc.text(lang)) from None
    program = program or ex.program
    if re.fullmatch(r"[A-Za-z0-9._-]+(\[[A-Za-z0-9_,.-]+\])?", install.strip()):  # a bare name: unpinned
        from importlib.metadata import version

        click.echo(text("github_classroom", "unpinned", lang, install=install, version=version("mailtrace")), err=True)
    text_out = workflow(ex.name, install=install, program=program, lang=lang, python=python,
                        max_score=round(sum(c.points for c in ex.checks.values()), 4))
    if str(output) == "-":
        click.echo(text_out, nl=False)
        return
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; use --force to replace it.")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text_out, encoding="utf-8")
    click.echo(text("github_classroom", "wrote", lang, output=output, exercise=ex.name, program=program))
