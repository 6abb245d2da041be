"""``mailtrace lab``: start every lab server (SMTP, and POP3 / IMAP when present) on one store."""

from __future__ import annotations

from pathlib import Path

import click

from mailtrace.cli.serve import (Endpoint, available_protocols, build_lab, common_options, parse_users,
                                 read_users_file, run_lab, smtp_options, web_options, web_settings)
from mailtrace.servers.lab import DEFAULT_PORTS
from mailtrace.servers.limits import Limits

PORT = click.IntRange(0, 65535)


@click.command(name="lab")
@click.option("--smtp-port", type=PORT, default=DEFAULT_PORTS["smtp"][0], show_default=True,
              help="SMTP port (0: any free port).")
@click.option("--pop3-port", type=PORT, default=DEFAULT_PORTS["pop3"][0], show_default=True,
              help="POP3 port (0: any free port).")
@click.option("--imap-port", type=PORT, default=DEFAULT_PORTS["imap"][0], show_default=True,
              help="IMAP port (0: any free port).")
@click.option("--smtps-port", type=PORT, default=DEFAULT_PORTS["smtp"][1], show_default=True,
              help="Implicit-TLS SMTP (submissions, like 465).")
@click.option("--pop3s-port", type=PORT, default=DEFAULT_PORTS["pop3"][1], show_default=True,
              help="Implicit-TLS POP3 (like 995).")
@click.option("--imaps-port", type=PORT, default=DEFAULT_PORTS["imap"][1], show_default=True,
              help="Implicit-TLS IMAP (like 993).")
@click.option("--users", "users_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A classroom's accounts: CSV (name,password rows) or TOML ([users] name = \"password\").")
@click.option("--allow-plaintext-auth", is_flag=True,
              help="Off loopback, accept passwords before TLS too (only on a closed lab network).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also save each user's sessions in DIR/<user>/ (text and JSONL), to hand to each student.")
@click.option("--max-connections", type=click.IntRange(1), default=Limits.max_connections, show_default=True,
              help="Connections at once, all protocols together.")
@click.option("--max-per-address", type=click.IntRange(1), default=Limits.max_per_address, show_default=True,
              help="Connections at once from one client address (loopback exempt).")
@click.option("--rate-per-address", type=click.FloatRange(0.1), default=Limits.rate_per_address, show_default=True,
              help="New connections per second from one client address (bursts of 5x; loopback exempt).")
@smtp_options
@common_options
@web_options
def command(smtp_port: int, pop3_port: int, imap_port: int, smtps_port: int, pop3s_port: int, imaps_port: int,
            users_file: Path | None, allow_plaintext_auth: bool, log_dir: Path | None, max_connections: int,
            max_per_address: int, rate_per_address: float, max_message_size: int,
            host: str, directory: Path, users: tuple[str, ...], log: Path | None, text: Path | None, lang: str,
            show_secrets: bool, no_tls: bool, fresh: bool, web: str | None, admin: str | None, quiet: bool,
            workers: int) -> None:
    """Start the SMTP, POP3 and IMAP lab servers on one Maildir store, on 127.0.0.1.

    \b
    Then, in another terminal:
      nc -C 127.0.0.1 2525          # SMTP by hand (HELO, MAIL FROM, RCPT TO, DATA, QUIT)
      nc -C 127.0.0.1 1100          # POP3 by hand (USER, PASS, LIST, RETR, QUIT)
    Every dialogue appears here, annotated (--lang es for Spanish).
    The mail store (mailtrace-lab/mail) persists between runs; --fresh starts it empty.
    With --web 8025, watch it live in a browser too: http://127.0.0.1:8025/
    """
    plain = {"smtp": smtp_port, "pop3": pop3_port, "imap": imap_port}
    implicit = {"smtp": smtps_port, "pop3": pop3s_port, "imap": imaps_port}
    protocols = available_protocols()
    endpoints = [Endpoint(p, host, plain[p]) for p in protocols]
    if not no_tls:
        endpoints += [Endpoint(p, host, implicit[p], implicit_tls=True) for p in protocols]
    accounts = parse_users(users)
    from_file: dict[str, str] = {}
    if users_file is not None:
        from_file = read_users_file(users_file)
        accounts = from_file if not users else {**accounts, **from_file}
    limits = {"max_connections": max_connections, "max_per_address": max_per_address,
              "rate_per_address": rate_per_address, "burst_per_address": max(1, int(rate_per_address * 5))}
    settings = web_settings(web, admin, accounts, show_secrets, tls=not no_tls)
    lab = build_lab(directory.resolve(), accounts, lang=lang, log=log, text=text,
                    show_secrets=show_secrets, tls=not no_tls, fresh=fresh, live=not quiet,
                    sinks=(settings.feed,) if settings else (), limits=limits,
                    allow_plaintext_auth=allow_plaintext_auth, log_dir=log_dir, tls_names=(host,),
                    smtp_config={"max_message_size": max_message_size})
    lab.users_from_file = frozenset(from_file)
    run_lab(lab, endpoints, log=log, text=text, web=settings, workers=workers)
