"""``mailtrace show``: render a saved transcript (JSONL) or a capture (pcap, pcapng).

Events are streamed from the file into a sink (terminal, JSONL, HTML, pcap) as they are read, so
a capture of any size is shown without holding it in memory; only the HTML sink, which groups
each session's ladder, collects the events first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

FORMATS = ("text", "html", "jsonl", "pcap")


class _Decoding:
    """A sink wrapper: runs the credential decoder per session (readable formats only)."""

    def __init__(self, inner, show_secrets: bool, lang: str) -> None:
        self.inner = inner
        self.show_secrets = show_secrets
        self.lang = lang
        self.decoders: dict = {}
        self.count = 0

    def handle(self, event) -> None:
        from mailtrace.proxy.credentials import CredentialDecoder

        self.count += 1
        dec = self.decoders.get(event.session)
        if dec is None:
            dec = self.decoders[event.session] = CredentialDecoder(event.protocol, self.show_secrets, self.lang)
        self.inner.handle(dec.feed(event))

    def close(self) -> None:
        pass


class _Counting(_Decoding):
    def handle(self, event) -> None:
        self.count += 1
        self.inner.handle(event)


def stream_events(path: Path, sink, *, port: int | None = None, protocol: str | None = None,
                  show_secrets: bool = False, lang: str = "en") -> None:
    """Push every event of a JSONL transcript or a pcap/pcapng capture into ``sink.handle``;
    click errors when the file cannot be read."""
    from mailtrace.capture.pcapfile import CaptureFormatError, sniff_format
    from mailtrace.transcript.jsonl import TranscriptFormatError, read_jsonl
    from mailtrace.transcript.recorder import Recorder

    from mailtrace.knowledge import phrase

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}")
    if not sniff_format(head) and not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        # neither a capture's magic number nor a JSONL transcript's first object: say what it is not
        what = "show-empty" if not head else "show-unknown-file"
        raise click.ClickException(phrase("cli", what, lang, path=path) + "\n" + phrase("cli", "show-file-hint", lang))
    try:
        if sniff_format(head):
            from mailtrace.capture.importer import import_capture

            stats = import_capture(path, Recorder([sink]), port=port, protocol=protocol, show_secrets=show_secrets,
                                   lang=lang)
            if stats.truncated:
                click.echo(phrase("cli", "show-truncated", lang, path=path, octets=stats.truncated), err=True)
        else:
            for event in read_jsonl(path):
                sink.handle(event)
    except (TranscriptFormatError, CaptureFormatError) as exc:
        raise click.ClickException(f"{exc}")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: neither a mailtrace transcript (JSONL) nor a pcap/pcapng capture")
    except BrokenPipeError:
        raise  # the reader of our output went away (``| head``): not a problem with the file
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}")


def load_events(path: Path, **kw) -> list:
    """All the events of a transcript or capture, in a list."""
    from mailtrace.transcript.recorder import MemorySink

    mem = MemorySink()
    stream_events(path, mem, **kw)
    return mem.events


@click.command(name="show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="text: the live terminal view; html: a ladder diagram (one offline file); jsonl; pcap.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of the terminal (needed for pcap; .pcapng keeps the annotations).")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the annotations and messages.")
@click.option("--show-secrets", is_flag=True, help="Decode passwords too (when the file still holds them).")
@click.option("--port", type=click.IntRange(1, 65535), help="Captures: the server port (for non-standard ports).")
@click.option("--protocol", type=click.Choice(["smtp", "pop3", "imap"]), help="Captures: the protocol on --port.")
@click.option("--packets", is_flag=True,
              help="Captures: list each TCP segment (flags, seq/ack, length) with the lines it carries.")
def command(file: Path, fmt: str, output: Path | None, lang: str, show_secrets: bool, port: int | None,
            protocol: str | None, packets: bool) -> None:
    """Render a transcript (.jsonl) or a capture (.pcap/.pcapng).

    \b
    Examples:
      mailtrace show session.jsonl
      mailtrace show session.jsonl --format html -o session.html
      mailtrace show lab.pcap --lang es
      mailtrace show lab.pcap --packets           # the TCP segments under the dialogue
      mailtrace show capture.pcapng --port 2525 --format jsonl -o capture.jsonl
      mailtrace show session.jsonl --format pcap -o session.pcapng   # open it in Wireshark
    """
    if fmt == "pcap" and output is None:
        raise click.UsageError("--format pcap needs -o FILE (.pcap, or .pcapng for annotations)")
    if packets:
        _show_packets(file, fmt, output, port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
        return
    opts = dict(port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
    out_file = None
    try:
        if fmt == "pcap":
            from mailtrace.capture.export import PcapSink

            inner = PcapSink(output, show_secrets=show_secrets, lang=lang)
            # decoded like the text view, so a transcript saved with its passwords exports them
            # hidden (the decoded user travels as a packet comment) unless --show-secrets
            sink = _Decoding(inner, show_secrets, lang)
        elif fmt == "jsonl":
            from mailtrace.transcript.jsonl import JsonlSink

            out_file = open(output, "w", encoding="utf-8") if output else None
            inner = JsonlSink(out_file or sys.stdout, show_secrets=show_secrets, autoflush=False)
            sink = _Counting(inner, show_secrets, lang)
        elif fmt == "html":
            from mailtrace.transcript.html import HtmlSink

            out_file = open(output, "w", encoding="utf-8") if output else None
            inner = HtmlSink(out_file or sys.stdout, lang=lang, title=f"mailtrace: {file.name}")
            sink = _Decoding(inner, show_secrets, lang)
        else:
            from rich.console import Console

            from mailtrace.proxy.safe import EscapingSink
            from mailtrace.transcript.terminal import AnsiTerminalSink

            if output is None:
                console = Console(highlight=False)
            else:
                out_file = open(output, "w", encoding="utf-8")
                console = Console(file=out_file, highlight=False, no_color=True, width=200)
            inner = EscapingSink(AnsiTerminalSink(console, lang=lang))  # traced bytes must not drive the terminal
            sink = _Decoding(inner, show_secrets, lang)
        try:
            stream_events(file, sink, **opts)
        except BaseException:
            if fmt != "html":  # a page is written whole or not at all
                inner.close()
            raise
        inner.close()
    except BrokenPipeError:
        # ``mailtrace show x.jsonl | head``: stop quietly, as cat does; stdout is dead, so point
        # it at /dev/null to keep the interpreter's final flush from complaining
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or output}: {exc.strerror or exc}")
    finally:
        if out_file is not None:
            out_file.close()
    if sink.count == 0:
        from mailtrace.knowledge import phrase

        click.echo(phrase("cli", "no-conversation", lang, file=file), err=True)


def _show_packets(file: Path, fmt: str, output: Path | None, **opts) -> None:
    """``--packets``: the segment view (``mailtrace.capture.segments``, which loads scapy)."""
    from mailtrace.capture.pcapfile import CaptureFormatError, sniff_format

    if fmt != "text":
        raise click.UsageError("--packets is a text view: it cannot be combined with --format " + fmt)
    try:
        with open(file, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}")
    if not sniff_format(head):
        raise click.UsageError(f"--packets needs a capture (pcap or pcapng); {file.name} is not one")
    from mailtrace.capture.segments import read_connections, render

    try:
        connections = read_connections(file, **opts)
    except CaptureFormatError as exc:
        raise click.ClickException(f"{exc}")
    except Exception as exc:  # scapy's own complaint about a damaged file
        if type(exc).__name__ != "Scapy_Exception":
            raise
        raise click.ClickException(f"{file}: {exc}")
    lines = render(connections, opts["lang"])
    try:
        if output is None:
            for line in lines:
                click.echo(line)
        else:
            with open(output, "w", encoding="utf-8") as out:
                for line in lines:
                    out.write(line + "\n")
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or output}: {exc.strerror or exc}")
    if not connections:
        from mailtrace.knowledge import phrase

        click.echo(phrase("cli", "no-conversation", opts["lang"], file=file), err=True)
