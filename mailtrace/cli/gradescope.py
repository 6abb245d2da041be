"""``mailtrace gradescope``: build a Gradescope autograder zip for an exercise."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="gradescope")
@click.argument("exercise")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("autograder.zip"), show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Scenarios graded in parallel on Gradescope's machine.")
def command(exercise: str, output: Path, jobs: int) -> None:
    """Build a Gradescope autograder (setup.sh, run_autograder, the exercise and mailtrace itself).

    \b
    Example:
      mailtrace gradescope smtp-client -o smtp-autograder.zip
    Upload the zip as a "Zip file upload" autograder; students submit smtp_client.py.
    """
    from mailtrace.grading.exercise import ExerciseError, find_exercise, load_exercise
    from mailtrace.grading.gradescope import build

    try:
        load_exercise(exercise)  # fail here, not on Gradescope, if the exercise is broken
        directory = find_exercise(exercise)
    except ExerciseError as exc:
        raise click.ClickException(str(exc)) from None
    names = build(directory, output, jobs=jobs)
    click.echo(f"wrote {output} ({len(names)} files): setup.sh, run_autograder, exercise/, mailtrace-src/")
