"""``mailtrace gradescope``: build a Gradescope autograder zip for an exercise."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="gradescope")
@click.argument("exercise")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("autograder.zip"), show_default=True,
              help="Where to write the autograder zip (upload it to Gradescope).")
@click.option("--jobs", "-j", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Scenarios graded in parallel on Gradescope's machine.")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the feedback students see.")
def command(exercise: str, output: Path, jobs: int, lang: str) -> None:
    """Build a Gradescope autograder (setup.sh, run_autograder, the exercise and mailtrace itself).

    \b
    Example:
      mailtrace gradescope smtp-client -o smtp-autograder.zip
      mailtrace gradescope pop3-client --lang es -o pop3-es.zip
    Upload the zip as a "Zip file upload" autograder; students submit smtp_client.py (or a
    folder with an executable run, a Makefile or a build.sh).  setup.sh installs a Python that
    mailtrace supports (deadsnakes or uv on Ubuntu 22.04, whose python3 is 3.10) and bubblewrap.
    """
    from mailtrace.grading.exercise import ExerciseError, find_exercise, load_exercise
    from mailtrace.grading.gradescope import build

    try:
        load_exercise(exercise)  # fail here, not on Gradescope, if the exercise is broken
        directory = find_exercise(exercise)
    except ExerciseError as exc:
        raise click.ClickException(exc.text(lang)) from None
    names = build(directory, output, jobs=jobs, lang=lang)
    click.echo(f"wrote {output} ({len(names)} files): setup.sh, run_autograder, exercise/, mailtrace-src/")
