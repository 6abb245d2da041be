"""The lab's own certificate authority, and TLS contexts for the servers and the proxy.

On first use a lab CA and a server certificate (for lab.test, localhost, 127.0.0.1 and ::1)
are generated into ``<lab dir>/tls/``.  Students make their clients trust the lab CA
(``mailtrace ca --export ca.pem``) to use STARTTLS (RFC 3207), STLS (RFC 2595) and the
implicit-TLS ports.  The proxy's ``--intercept-tls`` asks this module for a certificate for
the real server's name, signed by the same CA: a client that trusts the lab CA is fooled,
which is exactly the lesson of lab 7 (why a client must verify whom it talks to).

``cryptography`` is imported lazily: only starting TLS pays for it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

CA_NAME = "mailtrace lab CA (teaching only)"
SERVER_NAMES = ("lab.test", "localhost", "127.0.0.1", "::1")
VALID_DAYS = 825  # the longest lifetime clients such as macOS accept for server certificates

_lock = threading.Lock()


@dataclass(frozen=True)
class TlsPaths:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def paths(lab_dir: str | Path) -> TlsPaths:
    d = Path(lab_dir) / "tls"
    return TlsPaths(d, d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(names) -> list:
    from cryptography import x509

    out = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _issue(ca_cert, ca_key, names, common_name: str):
    """A server certificate for ``names`` signed by the lab CA: (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(now + _dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _names_in(cert_path: Path) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n.value) for n in san}


def ensure_lab_tls(lab_dir: str | Path, extra_names: tuple[str, ...] = ()) -> TlsPaths:
    """Create the lab CA and the server certificate on first use; return their paths.

    ``extra_names``: the address or name a classroom lab is reached at (``--host``); the
    server certificate is issued again (same CA) when it does not name them yet, so students
    who trust the lab CA can check the server they connect to."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    p = paths(lab_dir)
    extra = tuple(n for n in extra_names if n and n not in ("0.0.0.0", "::"))
    with _lock:
        if p.ca_cert.exists() and p.ca_key.exists() and p.server_cert.exists() and p.server_key.exists():
            if not extra or set(extra) <= _names_in(p.server_cert):
                return p
        p.directory.mkdir(parents=True, exist_ok=True)
        if p.ca_cert.exists() and p.ca_key.exists():
            ca_cert = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
            ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), None)
        else:
            ca_key = _new_key()
            now = _dt.datetime.now(_dt.timezone.utc)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
            ca_cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(ca_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(hours=1))
                .not_valid_after(now + _dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            _write_private(p.ca_key, _key_pem(ca_key))
            _write_public(p.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        names = list(SERVER_NAMES) + [n for n in extra if n not in SERVER_NAMES]
        cert, key = _issue(ca_cert, ca_key, names, "lab.test")
        _write_private(p.server_key, _key_pem(key))
        _write_public(p.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return p


def server_context(lab_dir: str | Path, extra_names: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The TLS context of the lab servers (STARTTLS, STLS and the implicit-TLS ports)."""
    p = ensure_lab_tls(lab_dir, extra_names)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(p.server_cert, p.server_key)
    return ctx


def client_context(lab_dir: str | Path) -> ssl.SSLContext:
    """A client context that trusts only the lab CA (tests, the grader, the proxy's upstream)."""
    p = ensure_lab_tls(lab_dir)
    ctx = ssl.create_default_context(cafile=str(p.ca_cert))
    return ctx


@functools.lru_cache(maxsize=64)
def _intercept_pair(lab_dir: str, hostname: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    p = ensure_lab_tls(lab_dir)
    ca_cert = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), None)
    names = [hostname] if hostname else []
    names += [n for n in SERVER_NAMES if n not in names]
    cert, key = _issue(ca_cert, ca_key, names, hostname or "lab.test")
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def intercept_context(lab_dir: str | Path, hostname: str) -> ssl.SSLContext:
    """A server context presenting a lab-CA-signed certificate for ``hostname`` (the proxy's
    ``--intercept-tls``: the client must trust the lab CA to be fooled)."""
    cert_pem, key_pem = _intercept_pair(str(lab_dir), hostname)
    d = paths(lab_dir).directory / "intercept"
    d.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in (hostname or "default"))
    cert_path, key_path = d / f"{safe}.pem", d / f"{safe}.key"
    if not cert_path.exists():
        _write_private(key_path, key_pem)
        _write_public(cert_path, cert_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
