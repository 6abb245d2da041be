"""``mailtrace sniff``: capture mail traffic live on an interface and annotate it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click


@click.command(name="sniff")
@click.option("--iface", default="lo", show_default=True, help="The interface to capture on.")
@click.option("--port", type=click.IntRange(1, 65535), help="Only this server port (default: the usual mail ports).")
@click.option("--protocol", type=click.Choice(["smtp", "pop3", "imap"]), help="The protocol on --port (default: guessed).")
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), help="Save the transcript as JSON Lines.")
@click.option("--text", type=click.Path(dir_okay=False, path_type=Path), help="Save the transcript as plain text.")
@click.option("--pcap", type=click.Path(dir_okay=False, path_type=Path), help="Save the dialogue as a capture (.pcapng: annotated).")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the annotations and messages.")
@click.option("--show-secrets", is_flag=True, help="Show passwords decoded (default: ***).")
@click.option("--duration", type=click.FloatRange(min=0.1), help="Stop after this many seconds (default: Ctrl+C).")
@click.option("--quiet", is_flag=True, help="No live view (only the files asked for).")
@click.option("--engine", type=click.Choice(["auto", "tcpdump", "scapy"]), default="auto", show_default=True,
              help="Who captures: tcpdump, or scapy's sniffer (libpcap/Npcap, no tcpdump needed); "
                   "auto takes tcpdump when it is installed.")
def command(iface, port, protocol, log, text, pcap, lang, show_secrets, duration, quiet, engine) -> None:
    """Watch mail traffic on an interface, annotated live (needs capture privileges).

    \b
    Examples:
      sudo mailtrace sniff --iface lo
      sudo mailtrace sniff --iface lo --port 2525 --log capture.jsonl
      sudo mailtrace sniff --iface lo --engine scapy   # without tcpdump
    Unlike the proxy this sees only what crosses the wire: after STARTTLS the rest is encrypted.
    """
    from mailtrace.capture.importer import CaptureImporter
    from mailtrace.capture.pcapfile import CaptureFormatError, read_packets
    from mailtrace.capture.sniff import SniffConfig, SniffError, bpf_filter, choose_engine, kernel_drops, start_tcpdump
    from mailtrace.cli.proxy import open_sinks
    from mailtrace.transcript.recorder import Recorder

    cfg = SniffConfig(iface=iface, port=port, duration=duration)
    engine = choose_engine(engine)
    proc = capture = None
    try:
        if engine == "tcpdump":
            proc, _ = start_tcpdump(cfg)
        else:
            from mailtrace.capture.sniff import ScapyCapture

            capture = ScapyCapture(cfg)
    except SniffError as exc:
        raise click.ClickException(str(exc))
    except OSError as exc:
        raise click.ClickException(f"cannot start {engine}: {exc}")
    recorder = Recorder(open_sinks(log=log, text=text, pcap=pcap, lang=lang, show_secrets=show_secrets, live=not quiet))
    importer = CaptureImporter(recorder, port=port, protocol=protocol, show_secrets=show_secrets, lang=lang)
    from mailtrace.knowledge import phrase

    click.echo(phrase("cli", "sniff-capturing", lang, iface=iface, engine=engine, filter=bpf_filter(port)))

    def stop_capture() -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if capture is not None:
            capture.stop()

    def stop(signum, frame):  # Ctrl+C: stop capturing, then read what was captured up to the end
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C stops at once
        stop_capture()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        importer.feed_packets(read_packets(proc.stdout) if proc is not None else capture.packets())
    except KeyboardInterrupt:
        pass
    except CaptureFormatError as exc:
        raise click.ClickException(f"unexpected data from tcpdump: {exc}")
    finally:
        stop_capture()
        if proc is not None:
            proc.wait()
        stats = importer.finish()
        recorder.close()
    click.echo(phrase("cli", "sniff-stats", lang, packets=stats.packets, sessions=stats.sessions, gaps=stats.gaps), err=True)
    if proc is None:
        return
    time.sleep(0.1)  # let tcpdump's closing statistics arrive
    dropped = kernel_drops(proc)
    if dropped:
        click.echo(phrase("cli", "sniff-dropped", lang, dropped=dropped), err=True)
