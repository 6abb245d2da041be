"""``mailtrace show``: render a saved transcript (JSONL) or a capture (pcap, pcapng)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

FORMATS = ("text", "html", "jsonl", "pcap")


def load_events(path: Path, *, port: int | None = None, protocol: str | None = None, show_secrets: bool = False,
                lang: str = "en") -> list:
    """The events of a JSONL transcript or of a pcap/pcapng capture; click errors when unreadable."""
    from mailtrace.capture.pcapfile import CaptureFormatError, sniff_format
    from mailtrace.transcript.jsonl import TranscriptFormatError, read_jsonl
    from mailtrace.transcript.recorder import MemorySink, Recorder

    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}")
    try:
        if sniff_format(head):
            from mailtrace.capture.importer import import_capture

            mem = MemorySink()
            import_capture(path, Recorder([mem]), port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
            return mem.events
        return list(read_jsonl(path))
    except (TranscriptFormatError, CaptureFormatError) as exc:
        raise click.ClickException(f"{exc}")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: neither a mailtrace transcript (JSONL) nor a pcap/pcapng capture")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}")


def decode_credentials(events: list, show_secrets: bool, lang: str = "en") -> list:
    """Run the credential decoder over loaded events (per session), for the readable formats."""
    from mailtrace.proxy.credentials import CredentialDecoder

    decoders: dict[str, CredentialDecoder] = {}
    out = []
    for event in events:
        dec = decoders.get(event.session)
        if dec is None:
            dec = decoders[event.session] = CredentialDecoder(event.protocol, show_secrets, lang)
        out.append(dec.feed(event))
    return out


@click.command(name="show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: the live terminal view; html: a ladder diagram (one offline file); jsonl; pcap.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of the terminal (needed for pcap; .pcapng keeps the annotations).")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True)
@click.option("--show-secrets", is_flag=True, help="Decode passwords too (when the file still holds them).")
@click.option("--port", type=click.IntRange(1, 65535), help="Captures: the server port (for non-standard ports).")
@click.option("--protocol", type=click.Choice(["smtp", "pop3", "imap"]), help="Captures: the protocol on --port.")
def command(file: Path, fmt: str, output: Path | None, lang: str, show_secrets: bool, port: int | None,
            protocol: str | None) -> None:
    """Render a transcript (.jsonl) or a capture (.pcap/.pcapng).

    \b
    Examples:
      mailtrace show session.jsonl
      mailtrace show session.jsonl --format html -o session.html
      mailtrace show lab.pcap --lang es
      mailtrace show capture.pcapng --port 2525 --format jsonl -o capture.jsonl
      mailtrace show session.jsonl --format pcap -o session.pcapng   # open it in Wireshark
    """
    events = load_events(file, port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
    if not events:
        click.echo(f"{file}: no mail conversation found", err=True)
    try:
        if fmt == "pcap":
            if output is None:
                raise click.UsageError("--format pcap needs -o FILE (.pcap, or .pcapng for annotations)")
            from mailtrace.capture.export import export

            export(events, output, show_secrets=show_secrets, lang=lang)
        elif fmt == "jsonl":
            from mailtrace.transcript.jsonl import JsonlSink

            _write_sink(lambda f: JsonlSink(f, show_secrets=show_secrets), events, output)
        elif fmt == "html":
            from mailtrace.transcript.html import render_html

            page = render_html(decode_credentials(events, show_secrets, lang), lang=lang, title=f"mailtrace: {file.name}")
            if output is None:
                click.echo(page, nl=False)
            else:
                output.write_text(page, encoding="utf-8")
        else:
            _terminal(decode_credentials(events, show_secrets, lang), output, lang)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or output}: {exc.strerror or exc}")


def _write_sink(make, events, output) -> None:
    if output is None:
        sink = make(sys.stdout)
    else:
        f = open(output, "w", encoding="utf-8")
        sink = make(f)
    try:
        for event in events:
            sink.handle(event)
    finally:
        sink.close()
        if output is not None:
            f.close()


def _terminal(events, output, lang) -> None:
    from rich.console import Console

    from mailtrace.transcript.terminal import TerminalSink

    if output is None:
        console = Console(highlight=False)
        sink = TerminalSink(console, lang=lang)
        for event in events:
            sink.handle(event)
        return
    with open(output, "w", encoding="utf-8") as f:
        console = Console(file=f, highlight=False, no_color=True, width=200)
        sink = TerminalSink(console, lang=lang)
        for event in events:
            sink.handle(event)
