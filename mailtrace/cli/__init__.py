"""The ``mailtrace`` command: a click group whose subcommands load lazily.

Each subcommand lives in its own module (``mailtrace/cli/<name>.py``, exporting a click
command called ``command``), imported only when it runs, so ``mailtrace --help`` stays fast
and never pays for scapy, asyncio servers or the grader.
"""

from __future__ import annotations

import importlib

import click

from mailtrace import __version__

# name -> (module, one-line help shown by `mailtrace --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("mailtrace.cli.lab", "Start the SMTP, POP3 and IMAP lab servers on one Maildir store."),
    "serve": ("mailtrace.cli.serve", "Start one lab server (smtp, pop3 or imap)."),
    "explain": ("mailtrace.cli.explain", "Explain a reply code or a command (e.g. 354, smtp RCPT)."),
    "proxy": ("mailtrace.cli.proxy", "Trace a real client talking to a real server."),
    "show": ("mailtrace.cli.show", "Render a transcript (JSONL) or a capture (pcap) as text, HTML, JSONL or pcap."),
    "sniff": ("mailtrace.cli.sniff", "Capture mail traffic live on an interface and annotate it."),
    "ca": ("mailtrace.cli.ca", "Manage the lab's certificate authority (export it for clients)."),
    "grade": ("mailtrace.cli.grade", "Grade a student's client (or a whole class) against scripted servers."),
    "gradescope": ("mailtrace.cli.gradescope", "Build a Gradescope autograder zip for an exercise."),
    "exercises": ("mailtrace.cli.exercises", "List the graded exercises; 'exercises copy NAME' starts one anywhere."),
    "classroom-workflow": ("mailtrace.cli.classroom_workflow",
                           "Write the GitHub Classroom workflow that grades an exercise on each push."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module_name, help_text = SUBCOMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise

            @click.command(name=name, help=help_text, short_help=help_text)
            def missing() -> None:
                raise click.ClickException(f"'mailtrace {name}' is not available in this version yet.")

            return missing
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the registry's help texts, so listing commands imports nothing.
        rows = [(name, help_text) for name, (_, help_text) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the version, and where exercises are looked up by name."""
    if not value or ctx.resilient_parsing:
        return
    from mailtrace.grading.exercise import exercises_origin

    root, origin = exercises_origin()
    click.echo(f"mailtrace, version {__version__}")
    click.echo(f"exercises: {root} ({origin})" if root else f"exercises: {origin}")
    ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and where the exercises come from, then exit.")
def main() -> None:
    """mailtrace: watch, learn and grade e-mail protocols (SMTP, POP3, IMAP).

    \b
    Quick start:
      mailtrace lab                 # start the lab servers on 127.0.0.1
      nc -C 127.0.0.1 2525          # talk SMTP by hand, watch the annotated dialogue
      mailtrace explain 354         # what does a reply code mean?
    """
