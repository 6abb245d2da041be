"""``mailtrace proxy``: watch a real client talk to a real server, annotated live."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
from pathlib import Path

import click

from mailtrace.netaddr import host_port, is_loopback
from mailtrace.proxy.registry import PROTOCOLS


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); a click error when malformed."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        ok = bool(sep and rest.startswith(":"))
    else:
        host, sep, port_text = text.rpartition(":")
        ok = bool(sep) and ":" not in host
    if not ok or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (for example 127.0.0.1:2525 or [::1]:25)", param_hint=what)
    return host, int(port_text)


@click.command(name="proxy")
@click.option("--listen", "listen", default="127.0.0.1:0", show_default=True,
              help="Address to accept clients on (port 0: any free port, printed in the banner).")
@click.option("--to", "to", required=True, help="The real server, HOST:PORT (e.g. 127.0.0.1:2525).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None,
              help="The protocol (default: guessed from the port, else from the server's greeting).")
@click.option("--log", "log", type=click.Path(dir_okay=False, path_type=Path), help="Save the transcript as JSON Lines.")
@click.option("--text", "text", type=click.Path(dir_okay=False, path_type=Path), help="Save the transcript as plain text.")
@click.option("--pcap", "pcap", type=click.Path(dir_okay=False, path_type=Path),
              help="Save the dialogue as a capture (.pcapng carries the annotations as packet comments).")
@click.option("--lang", type=click.Choice(["en", "es"]), default="en", show_default=True,
              help="Language of the annotations and messages.")
@click.option("--show-secrets", is_flag=True, help="Show passwords and AUTH payloads decoded (default: ***).")
@click.option("--intercept-tls", is_flag=True,
              help="Terminate TLS (STARTTLS/STLS and implicit TLS) with a lab-CA certificate to keep the dialogue visible.")
@click.option("--upstream-tls/--no-upstream-tls", default=None,
              help="The server speaks TLS from the first byte (default: by port, 465/993/995).")
@click.option("--upstream-ca", type=click.Path(exists=True, dir_okay=False),
              help="Verify the server's certificate against this CA (default: no verification, lab servers).")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("mailtrace-lab"),
              show_default=True, help="The lab directory (its tls/ folder holds the lab CA for --intercept-tls).")
@click.option("--quiet", is_flag=True, help="No live view (only the files asked for).")
@click.option("--web", metavar="[HOST:]PORT", default=None,
              help="Also show the traced sessions live in a browser (127.0.0.1 unless a HOST is given).")
def command(listen, to, protocol, log, text, pcap, lang, show_secrets, intercept_tls, upstream_tls, upstream_ca,
            lab_dir, quiet, web) -> None:
    """Relay a client to a real server and show the annotated dialogue live.

    \b
    Examples:
      mailtrace proxy --listen 127.0.0.1:2626 --to 127.0.0.1:2525
      swaks --server 127.0.0.1:2626 --to bob@lab.test
      mailtrace proxy --to 127.0.0.1:1430 --log imap.jsonl --pcap imap.pcapng
      mailtrace proxy --to 127.0.0.1:2525 --intercept-tls   # clients must trust the lab CA

    Traffic is relayed byte for byte; nothing is changed unless --intercept-tls is given.
    """
    import asyncio

    from rich.console import Console

    from mailtrace.proxy.annotator import Annotator
    from mailtrace.proxy.relay import Proxy, ProxyConfig
    from mailtrace.transcript.recorder import Recorder

    listen_host, listen_port = parse_hostport(listen, "--listen")
    up_host, up_port = parse_hostport(to, "--to")
    if up_port == 0:
        raise click.BadParameter("the server's port cannot be 0", param_hint="--to")
    try:
        socket.getaddrinfo(up_host, up_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise click.BadParameter(f"cannot resolve {up_host!r}: {exc}", param_hint="--to")
    err = Console(stderr=True, highlight=False)
    if not is_loopback(listen_host):
        err.print(f"[bold yellow]warning:[/] listening on {listen_host}, not loopback: anyone who can reach this "
                  "machine can use the proxy and read the transcript.")
    config = ProxyConfig(upstream_host=up_host, upstream_port=up_port, listen_host=listen_host, listen_port=listen_port,
                         protocol=protocol, intercept_tls=intercept_tls, upstream_tls=upstream_tls,
                         upstream_ca=upstream_ca, lab_dir=lab_dir, show_secrets=show_secrets, lang=lang)
    make_sinks = functools.partial(open_sinks, log=log, text=text, pcap=pcap, lang=lang, show_secrets=show_secrets,
                                   live=not quiet)
    from mailtrace.cli.serve import web_settings

    settings = web_settings(web, None, {}, show_secrets)
    annotator = recorder = None
    if intercept_tls or settings is not None:
        # the relay must see STARTTLS accepted at once (intercept), or the web view's feed must be on
        # this loop (--web): parse here
        recorder = Recorder(make_sinks() + ([settings.feed] if settings is not None else []))
    else:  # parse in a child process, off the relay's path (see mailtrace.proxy.annotator)
        check_writable(log, text, pcap)
        annotator = Annotator(make_sinks, show_secrets=show_secrets, lang=lang)
        annotator.start()

    async def main() -> None:
        proxy = Proxy(config, recorder, annotator)
        stop_on_signals(asyncio.current_task(), lang)
        try:
            await proxy.start()
        except OSError as exc:
            await proxy.stop()  # closes the annotator's pipe while the loop still runs: its child ends
            raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}")
        view = None
        if settings is not None:
            try:
                view = await settings.start(lang=lang)
            except OSError as exc:
                await proxy.stop()
                raise click.ClickException(f"cannot serve the web view on {web}: {exc.strerror or exc}")
        from mailtrace.knowledge import phrase

        proto = protocol or phrase("cli", "guessed", lang)
        tls = phrase("cli", "proxy-intercepting", lang) if intercept_tls else ""
        click.echo(phrase("cli", "proxy-listening", lang, listen=host_port(listen_host, proxy.port),
                          upstream=host_port(up_host, up_port), protocol=proto) + tls)
        if view is not None:
            click.echo(phrase("cli", "banner-web", lang, url=view.url))
        click.echo(phrase("cli", "press-ctrl-c", lang))
        try:
            await proxy.server.serve_forever()
        finally:
            if view is not None:
                await view.stop()
            await proxy.stop()

    try:
        from mailtrace.servers.loop import run

        run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise click.ClickException(str(exc))
    finally:
        if recorder is not None:
            recorder.close()
        if annotator is not None:
            annotator.close()


def stop_on_signals(task, lang: str) -> None:
    """Ctrl+C (SIGINT) and SIGTERM stop the proxy cleanly (its sessions closed and logged), as they
    stop ``mailtrace lab`` (cli/serve.py): the handlers are installed explicitly, so SIGINT works
    even when the parent started the proxy with SIGINT ignored (``cmd &`` in sh, a wrapper that
    ignores it), where Python would leave it ignored.  A second signal stops at once."""
    import asyncio

    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def on_signal(signum, frame) -> None:
        if signalled:
            from mailtrace.knowledge import phrase

            print(phrase("cli", "stopped-at-once", lang), file=sys.stderr, flush=True)
            os._exit(0)
        signalled.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread (tests): no signal handling
            signal.signal(sig, on_signal)


def check_writable(*paths) -> None:
    """Fail early, in the parent, when an output file cannot be written."""
    for path in paths:
        if path is None:
            continue
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}")


def open_sinks(*, log=None, text=None, pcap=None, lang="en", show_secrets=False, live=True) -> list:
    """The sinks of a live trace (proxy, sniff). Credentials are decoded into the shown form
    (``CredentialDecoder``), so the human-readable sinks always show that form."""
    from mailtrace.proxy.safe import EscapingSink
    from mailtrace.transcript.jsonl import JsonlSink
    from mailtrace.transcript.text import TextSink

    sinks: list = []
    try:
        if live:  # what people read gets the traced bytes with their control characters made inert;
            # drawn by a thread of its own, coalesced in floods (mailtrace.transcript.live)
            from mailtrace.proxy.safe import escape_controls
            from mailtrace.transcript.live import stdout_view

            sinks.append(stdout_view(lang, False, where=str(log) if log else "", prepare=escape_controls))
        # the logs are written by a thread of their own (mailtrace.transcript.background)
        from mailtrace.transcript.background import BackgroundSink

        if log:
            sinks.append(BackgroundSink(JsonlSink(log, show_secrets=show_secrets, autoflush=False)))
        if text:
            sinks.append(BackgroundSink(EscapingSink(TextSink(text, show_secrets=False, lang=lang, autoflush=False))))
        if pcap:
            from mailtrace.capture.export import PcapSink

            sinks.append(PcapSink(pcap, show_secrets=show_secrets, lang=lang))
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename}: {exc.strerror}")
    return sinks
