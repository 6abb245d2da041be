"""``mailtrace exercises``: list the graded exercises; ``exercises copy``: start one anywhere."""

from __future__ import annotations

from pathlib import Path

import click

LANGS = click.Choice(["en", "es"])


def _t(key: str, lang: str, **fields: object) -> str:
    from mailtrace.knowledge.messages import text

    return text("exercises", key, lang, **fields)


@click.group(name="exercises", invoke_without_command=True)
@click.option("--lang", type=LANGS, default="en", show_default=True, help="Language of the listing.")
@click.pass_context
def command(ctx: click.Context, lang: str) -> None:
    """List the graded exercises: name, language, points and what the student writes.

    \b
    Examples:
      mailtrace exercises
      mailtrace exercises --lang es
      mailtrace exercises copy smtp-client          # into ./smtp-client
      mailtrace exercises copy smtp-client lab8/
    """
    ctx.obj = {"lang": lang}  # `mailtrace exercises --lang es copy NAME` speaks Spanish too
    if ctx.invoked_subcommand is not None:
        return
    from mailtrace.grading.catalog import entries
    from mailtrace.grading.exercise import exercises_origin
    from mailtrace.knowledge.messages import table

    root, origin = exercises_origin()
    found = entries(root) if root else []
    if not found:
        raise click.ClickException(_t("none", lang, where=root or origin))
    languages = table("exercises", "languages", lang)
    origins = table("exercises", "origins", lang)
    rows = []
    for e in found:
        langs = ", ".join(sorted({languages.get(Path(s).suffix, Path(s).suffix or s) for s in e.skeletons})) or "-"
        rows.append((e.name, langs, _t("points", lang, points=e.points),
                     f"{e.program}: {e.title(lang)}" + (f"  [{e.error}]" if e.error else "")))
    header = table("exercises", "columns", lang)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    click.echo(_t("header", lang, count=len(found), origin=origins.get(origin, origin), root=root))
    click.echo("")
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
    click.echo(_t("hint", lang))


@command.command(name="copy")
@click.argument("name")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--lang", type=LANGS, help="Language of the messages [default: en].")
@click.pass_context
def copy_command(ctx: click.Context, name: str, directory: Path | None, lang: str | None) -> None:
    """Copy exercise NAME's statement (English and Spanish) and skeleton into DIRECTORY
    (default: ./NAME).  Refuses to overwrite a file already there.
    """
    lang = lang or (ctx.obj or {}).get("lang", "en")
    from mailtrace.grading.catalog import CopyRefused, copy, entry
    from mailtrace.grading.exercise import ExerciseError

    try:
        ex = entry(name)
    except ExerciseError as exc:
        raise click.ClickException(str(exc)) from None
    dest = directory if directory is not None else Path(ex.directory.name)
    if dest.exists() and not dest.is_dir():
        raise click.ClickException(_t("not_a_folder", lang, dir=dest))
    try:
        written = copy(name, dest)
    except CopyRefused as exc:
        raise click.ClickException(_t("exists", lang, dir=dest, files=", ".join(p.name for p in exc.existing))) from None
    except OSError as exc:
        raise click.ClickException(f"{dest}: {exc.strerror or exc}") from None
    click.echo(_t("copied", lang, dir=dest))
    for path in written:
        click.echo(f"  {path.name}")
    program = ex.program if ex.program in ex.skeletons or not ex.skeletons else ex.skeletons[0]
    # a folder given by path stays reachable after `cd DIR`
    grade_name = str(ex.directory.resolve()) if (Path(name) / "exercise.toml").is_file() else ex.name
    click.echo(_t("next", lang, dir=dest, program=program, name=grade_name))
