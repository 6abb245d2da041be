"""The lab CA: certificates a real TLS client verifies, on a real loopback socket."""

import socket
import ssl
import threading

from click.testing import CliRunner

from mailtrace import tls
from mailtrace.cli import main


def _serve_once(ctx: ssl.SSLContext):
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def run():
        conn, _ = srv.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"hello\r\n")
        except (ssl.SSLError, OSError):
            pass
        finally:
            srv.close()

    threading.Thread(target=run, daemon=True).start()
    return port


def _fetch(port: int, client_ctx: ssl.SSLContext, name: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.recv(100)


def test_server_certificate_verifies_against_lab_ca(tmp_path):
    port = _serve_once(tls.server_context(tmp_path))
    assert _fetch(port, tls.client_context(tmp_path), "lab.test") == b"hello\r\n"


def test_ca_is_created_once(tmp_path):
    p1 = tls.ensure_lab_tls(tmp_path)
    first = p1.ca_cert.read_bytes()
    assert tls.ensure_lab_tls(tmp_path).ca_cert.read_bytes() == first
    assert (p1.ca_key.stat().st_mode & 0o077) == 0  # the key is private


def test_intercept_certificate_names_the_real_server(tmp_path):
    port = _serve_once(tls.intercept_context(tmp_path, "mail.example.org"))
    assert _fetch(port, tls.client_context(tmp_path), "mail.example.org") == b"hello\r\n"


def test_untrusted_client_refuses_lab_certificate(tmp_path):
    port = _serve_once(tls.server_context(tmp_path))
    ctx = ssl.create_default_context()  # system CAs only
    try:
        _fetch(port, ctx, "lab.test")
    except ssl.SSLCertVerificationError:
        return
    raise AssertionError("a client not trusting the lab CA accepted its certificate")


def test_ca_export_cli(tmp_path):
    out = tmp_path / "ca.pem"
    result = CliRunner().invoke(main, ["ca", "--dir", str(tmp_path / "lab"), "--export", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    bad = CliRunner().invoke(main, ["ca", "--dir", str(tmp_path / "lab"), "--export", str(tmp_path / "no" / "ca.pem")])
    assert bad.exit_code != 0 and "does not exist" in bad.output
