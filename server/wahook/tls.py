"""TLS for the listeners: the webhook's SSLContext, gRPC's server credentials, client
contexts, self-signed certificates.

The server context is TLS 1.2 or newer (Meta's webhook client speaks 1.2 and 1.3). Both
listeners take a rotated certificate without a restart: the HTTPS front's on SIGHUP and at
the secret files' look every few seconds (ReloadingServerContext), gRPC's at the next
handshake after its files change (grpc_server_credentials).
Self-signed certificates are for `wahook serve --dev` and tests only; production
uses a certificate Meta trusts, or plain HTTP behind a TLS-terminating proxy.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
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

log = logging.getLogger("wahook")


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


def _fingerprint(*paths: Path | None) -> tuple[tuple[int, int, int], ...]:
    """What a rotation changes about the files (inode, size, modification time): a stat
    each, cheap enough for every gRPC handshake. A missing file reads as zeros."""
    out = []
    for path in paths:
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else (0, 0, 0))
    return tuple(out)


def _refusal(cert: Path, key: Path, client_ca: Path | None = None) -> str | None:
    """Why these files would not serve (None: they would), tried on scratch contexts, never
    on a live one: a half-written file, a key that does not match the certificate."""
    try:
        server_context(cert, key)
        if client_ca is not None:
            ssl.create_default_context(cafile=str(client_ca))
    except ConfigError as exc:
        return exc.message
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    return None


class ReloadingServerContext:
    """The HTTPS front's SSLContext, and its certificate and key loaded again when their files
    change (cert-manager, a Secret update): ``reload_if_changed`` on SIGHUP and every few
    seconds. New handshakes get the new certificate, open connections keep theirs. A pair
    that does not load (half written, a key that does not match) is refused before it touches
    the live context, logged, and tried again at the next look."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._seen = _fingerprint(cert, key)
        self.context = server_context(cert, key)

    def reload_if_changed(self) -> bool:
        """True when a new certificate was loaded."""
        seen = _fingerprint(self.cert, self.key)
        if seen == self._seen:
            return False
        why = _refusal(self.cert, self.key)  # the pair loads on its own first
        if why is None:
            try:
                self.context.load_cert_chain(str(self.cert), str(self.key))
            except (ssl.SSLError, OSError) as exc:  # changed again since: the next look
                why = str(exc)
        if why is not None:
            log.warning("HTTPS certificate not reloaded, the one in use is kept: %s", why)
            return False
        self._seen = seen
        log.info("HTTPS certificate reloaded from %s", self.cert)
        return True


def grpc_server_credentials(
    cert: Path, key: Path, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """gRPC server TLS with ``cert`` and ``key``; with ``client_ca``, every client must
    present a certificate that CA signed (mutual TLS), checked by gRPC before any call."""
    named = [("certificate", cert), ("key", key)]
    if client_ca is not None:
        named.append(("client CA", client_ca))
    _check_files(*named)
    files = _GrpcFiles(cert, key, client_ca)
    initial = files.configuration()
    # The fetcher returns None for "no change", as gRPC documents (its type stub says not).
    return grpc.dynamic_ssl_server_credentials(
        initial,
        files.fetch,  # type: ignore[arg-type]
        require_client_authentication=client_ca is not None,
    )


class _GrpcFiles:
    """gRPC's certificate configuration, read again when the files change: gRPC asks
    ``fetch`` at every handshake (a stat of each file), so a rotated certificate, key or
    client CA serves the next connection, with no signal. A set that does not load is
    logged and the one in use kept."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._seen = _fingerprint(cert, key, client_ca)

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        try:
            pair = (self.key.read_bytes(), self.cert.read_bytes())
            ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        except OSError as exc:
            raise ConfigError(
                f"cannot read a gRPC TLS file: {exc.strerror}: {exc.filename}"
            ) from None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        seen = _fingerprint(self.cert, self.key, self.client_ca)
        if seen == self._seen:
            return None
        why = _refusal(self.cert, self.key, self.client_ca)  # the set loads first
        if why is None:
            try:
                configuration = self.configuration()
            except ConfigError as exc:
                why = exc.message
        if why is not None:
            log.warning("gRPC certificate not reloaded, the one in use is kept: %s", why)
            return None
        self._seen = seen
        log.info("gRPC certificate reloaded from %s", self.cert)
        return configuration


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
