"""``mailtrace ca``: show or export the lab's certificate authority."""

from __future__ import annotations

import shutil
from pathlib import Path

import click


@click.command(name="ca")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("mailtrace-lab"),
              show_default=True, help="The lab directory (its tls/ folder holds the CA).")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CA certificate (PEM) to this file, for clients to trust.")
def command(lab_dir: Path, export_to: Path | None) -> None:
    """Create (on first use) and export the lab CA.

    \b
    Clients must trust this CA to use STARTTLS, STLS and the TLS ports of the lab:
      mailtrace ca --export lab-ca.pem
      curl --cacert lab-ca.pem --ssl-reqd smtp://127.0.0.1:2525 ...
      openssl s_client -starttls smtp -connect 127.0.0.1:2525 -CAfile lab-ca.pem
    The CA is for the lab only: never install it in a browser or system trust store you use.
    """
    from mailtrace.tls import ensure_lab_tls

    try:
        p = ensure_lab_tls(lab_dir)
    except OSError as exc:
        raise click.ClickException(f"cannot create the lab CA in {lab_dir}/tls: {exc.strerror or exc}")
    if export_to is None:
        click.echo(f"Lab CA certificate: {p.ca_cert}")
        click.echo(f"Server certificate: {p.server_cert} (lab.test, localhost, 127.0.0.1)")
        click.echo("Export it for a client with: mailtrace ca --export lab-ca.pem")
        return
    try:
        if export_to.parent and not export_to.parent.exists():
            raise click.ClickException(f"folder {export_to.parent} does not exist")
        shutil.copyfile(p.ca_cert, export_to)
    except OSError as exc:
        raise click.ClickException(f"cannot write {export_to}: {exc.strerror or exc}")
    click.echo(f"Wrote the lab CA certificate to {export_to}")
