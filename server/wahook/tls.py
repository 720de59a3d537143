"""TLS for the listeners: the webhook's SSLContext, gRPC's server credentials, client
contexts, self-signed certificates.

The server context is TLS 1.2 or newer (Meta's webhook client speaks 1.2 and 1.3).
Self-signed certificates are for `wahook serve --dev` and tests only; production
uses a certificate Meta trusts, or plain HTTP behind a TLS-terminating proxy.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wahook.errors import ConfigError


def _check_files(*named: tuple[str, Path]) -> None:
    """ConfigError naming the first file that is not there (ssl's own error names none:
    load_cert_chain's FileNotFoundError has no filename)."""
    for what, path in named:
        if not path.is_file():
            raise ConfigError(f"TLS {what} file not found: {path}")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """An SSLContext serving ``cert`` (PEM chain) with ``key``, TLS 1.2 minimum."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _check_files(("certificate", cert), ("key", key))
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        # Never include key material; the paths and the library's reason are enough.
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return ctx


def grpc_server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """gRPC server TLS with ``cert`` and ``key``; with ``client_ca``, every client must
    present a certificate that CA signed (mutual TLS), checked by gRPC before any call."""
    named = [("certificate", cert), ("key", key)]
    if client_ca is not None:
        named.append(("client CA", client_ca))
    _check_files(*named)
    try:
        pair = (key.read_bytes(), cert.read_bytes())
        ca = client_ca.read_bytes() if client_ca is not None else None
    except OSError as exc:
        raise ConfigError(f"cannot read a gRPC TLS file: {exc.strerror}: {exc.filename}") from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=client_ca is not None
    )


def client_context(cafile: Path | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client SSLContext trusting ``cafile`` (or the system store); ``insecure`` skips
    verification entirely (local testing only)."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def generate_self_signed(
    cert_path: Path,
    key_path: Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 365,
) -> None:
    """Write a self-signed EC P-256 certificate valid for ``hosts`` (DNS names or IPs)
    and its private key (mode 0600). The certificate is its own CA, so a client can
    trust it by passing it as ``cafile``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wahook dev " + hosts[0])])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
