"""``mailtrace grade``: grade a student's client (or a whole class) against scripted servers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

FORMATS = ("rich", "text", "json", "junit", "gradescope", "github-classroom")


def msg(key: str, lang: str, /, **fields: object) -> str:
    """One of the grader's messages (mailtrace/knowledge/messages/grading.toml) in ``lang``."""
    from mailtrace.knowledge import messages

    return messages.text("grading", key, lang, **fields)


def _isolate_network(mode: str, lang: str = "en") -> None:
    """Move the grader (and so the programs it runs) into a loopback-only network namespace."""
    if mode == "host":
        return
    from mailtrace.grading.sandbox import enter_private_network

    ok = enter_private_network()
    if not ok and mode == "private":
        raise click.ClickException(msg("cli.no-private-network", lang))


@click.command(name="grade")
@click.argument("exercise")
@click.argument("submission", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="rich", show_default=True,
              help="Report format (rich: coloured, for a terminal; github-classroom: a Classroom runner's "
                   "result, see `mailtrace classroom-workflow`).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write the report to this file (--class: a folder for gradebook.csv, class.json, report.html).")
@click.option("--seed", type=int, help="Seed of the randomised data (the report shows it; reuse it to reproduce a run).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Scenarios (or, with --class, students) graded in parallel.")
@click.option("--class", "class_mode", is_flag=True, help="SUBMISSION is a folder with one submission per student.")
@click.option("--scenario", "scenarios", multiple=True, help="Run only this scenario (repeatable).")
@click.option("--network", type=click.Choice(["auto", "private", "host"]), default="auto", show_default=True,
              help="private: loopback-only network namespace (root); auto: private when possible.")
@click.option("--verbose", "-v", is_flag=True, help="Text format: include every transcript.")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the report (titles, feedback, notes).")
@click.option("--show-secrets", is_flag=True, help="Keep passwords in transcripts and feedback (redacted by default).")
@click.option("--fail-under", type=float, metavar="SCORE",
              help="Exit with status 2 when the score, as a percentage of the points at stake (all of "
                   "them, or those of the --scenario chosen), is below SCORE (CI, GitHub Classroom); "
                   "otherwise the exit status is 0 whenever grading itself worked.")
def command(exercise: str, submission: Path, fmt: str, output: Path | None, seed: int | None, jobs: int,
            class_mode: bool, scenarios: tuple[str, ...], network: str, verbose: bool, lang: str,
            show_secrets: bool, fail_under: float | None) -> None:
    """Grade SUBMISSION (a file or a folder) for EXERCISE (smtp-client, pop3-client, imap-client,
    mime-compose; smtp-server, pop3-server: the student's server, mailtrace the client; or the
    path of an exercise folder).

    \b
    Examples:
      mailtrace grade smtp-client my_smtp_client.py
      mailtrace grade pop3-client submissions/ana/ --format json -o ana.json
      mailtrace grade imap-client submissions/ --class --jobs 2 -o results/
      mailtrace grade smtp-server my_smtp_server.py --lang es
    """
    from mailtrace.grading.exercise import ExerciseError, load_exercise

    _isolate_network(network, lang)
    try:
        ex = load_exercise(exercise)
    except ExerciseError as exc:
        raise click.ClickException(exc.text(lang)) from None
    if scenarios:
        unknown = set(scenarios) - {s.name for s in ex.scenarios}
        if unknown:
            raise click.ClickException(msg("cli.unknown-scenarios", lang, unknown=", ".join(sorted(unknown)),
                                                     known=", ".join(s.name for s in ex.scenarios)))
    if seed is None:
        seed = int.from_bytes(os.urandom(3), "big")
    if class_mode:
        if fmt != "rich":  # (rich is the default: not asked for)
            raise click.UsageError(msg("cli.class-format", lang, format=fmt))
        _class(ex, submission, output, seed, jobs, list(scenarios) or None, lang, show_secrets)
        return
    from mailtrace.grading.grader import grade
    from mailtrace.grading import report as rep

    if fmt == "rich" and output is None and sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            total = len([s for s in ex.scenarios if not scenarios or s.name in scenarios])
            task = progress.add_task(msg("class.progress", lang, exercise=ex.name), total=total)
            result = grade(ex, submission, seed=seed, jobs=jobs, scenarios=list(scenarios) or None,
                           progress=lambda: progress.advance(task), lang=lang, show_secrets=show_secrets)
    else:
        result = grade(ex, submission, seed=seed, jobs=jobs, scenarios=list(scenarios) or None, lang=lang,
                       show_secrets=show_secrets)
    if fmt == "github-classroom":
        _github_classroom(result, submission, output, lang)
    elif fmt == "rich" and output is None:
        from rich.console import Console

        rep.print_rich(result, Console(highlight=False))
    else:
        text = {"rich": lambda r: rep.to_text(r, verbose=verbose), "text": lambda r: rep.to_text(r, verbose=verbose),
                "json": rep.to_json, "junit": rep.to_junit, "gradescope": rep.to_gradescope}[fmt](result)
        if output is None:
            click.echo(text, nl=False)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
    if result.error:
        sys.exit(1)  # the submission could not be graded at all (nothing to run, too large...)
    # a percentage: `--scenario X --fail-under 100` (one Classroom test per scenario) means "all of X's points"
    percent = round(100 * result.score / result.max_score, 2) if result.max_score > 0 else 0.0
    if fail_under is not None and percent < fail_under:
        from mailtrace.knowledge import messages

        click.echo(messages.text("grading", "report.fail-under", lang, score=f"{result.score:g}",
                                 max=f"{result.max_score:g}", percent=f"{percent:g}", limit=f"{fail_under:g}"),
                   err=True)
        sys.exit(2)


def _github_classroom(result, submission: Path, output: Path | None, lang: str) -> None:
    """The Classroom runner's JSON (to -o, or stdout); with -o, the feedback goes to stdout,
    which is the Actions log the student reads."""
    import json

    from mailtrace.grading import github_classroom as gc

    data = gc.to_result(result, lang=lang, program=str(submission))
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(gc.log_text(result, data, lang=lang, program=str(submission)), nl=False)


def _class(ex, folder: Path, output: Path | None, seed: int, jobs: int, scenarios: list[str] | None,
           lang: str, show_secrets: bool = False) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mailtrace.grading import classroom

    if not folder.is_dir():
        raise click.ClickException(msg("class.not-a-folder", lang, path=folder))
    subs = classroom.submissions(folder)
    if not subs:
        raise click.ClickException(msg("class.no-submissions", lang, path=folder))
    out = output or Path(f"{ex.name}-grades")
    out.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, highlight=False)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console) as progress:
        task = progress.add_task(msg("class.progress", lang, exercise=ex.name), total=len(subs), last="")
        results = classroom.grade_class(
            ex, folder, seed=seed, jobs=jobs, scenarios=scenarios, lang=lang, show_secrets=show_secrets,
            on_done=lambda name, r: progress.update(task, advance=1, last=f"{name}: {r.score:g}/{r.max_score:g}"))
    classroom.write_csv(out / "gradebook.csv", ex, results)
    classroom.write_json(out / "class.json", ex, results, seed)
    links = classroom.write_ladders(out, results, lang)
    classroom.write_html(out / "report.html", ex, results, seed, links, lang)
    scores = [r.score for _, r in results]
    files = ", ".join(str(out / name) for name in ("gradebook.csv", "class.json", "report.html"))
    console.print(msg("class.done", lang, count=len(results), seed=seed,
                                mean=f"{sum(scores) / len(scores):.1f}", files=files), markup=False)
