"""Certificates rotate without a restart: the HTTPS front's at the secret files' look (every
few seconds, or SIGHUP), gRPC's at its next handshake; a pair that does not load is refused
and the one in use kept."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import pytest
from e2e_helpers import post, wait_until
from wahook import samples, tls
from wahook_testkit import Certs, WahookFactory


def _served(target: str, alpn: list[str] | None = None) -> bytes:
    """The certificate (DER) a new TLS connection to ``target`` is served."""
    host, port = target.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        ctx.wrap_socket(raw) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def _der(certs: Certs) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certs.cert.read_text())


def _rotate(into: Certs, scratch: Path, *, key_too: bool = True) -> None:
    """A new certificate (and key) made in ``scratch`` and moved over ``into``'s files, as
    a Secret update swaps them; without ``key_too`` its key stays in ``scratch``."""
    scratch.mkdir()
    tls.generate_self_signed(scratch / "cert.pem", scratch / "key.pem")
    if key_too:
        os.replace(scratch / "key.pem", into.key)
    os.replace(scratch / "cert.pem", into.cert)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_rotated_certificates_serve_new_connections_without_a_restart(
    tmp_path: Path, wahook_factory: type[WahookFactory], workers: str
) -> None:
    https = Certs(tmp_path / "https.pem", tmp_path / "https.key")
    tls.generate_self_signed(https.cert, https.key)
    grpc_certs = Certs(tmp_path / "grpc.pem", tmp_path / "grpc.key")
    tls.generate_self_signed(grpc_certs.cert, grpc_certs.key)
    w = wahook_factory.start(
        tmp_path / "d",
        certs=https,
        env={
            "WAHOOK_GRPC_TLS_CERT": str(grpc_certs.cert),
            "WAHOOK_GRPC_TLS_KEY": str(grpc_certs.key),
        },
        args=["--workers", workers],
    )
    assert _served(w.http_url) == _der(https)
    assert _served(w.grpc_target, ["h2"]) == _der(grpc_certs)
    first_https, first_grpc = _der(https), _der(grpc_certs)

    # New pairs, no signal: gRPC's next handshake and the front's next look pick them up.
    _rotate(https, tmp_path / "s1")
    _rotate(grpc_certs, tmp_path / "s2")
    second_https, second_grpc = _der(https), _der(grpc_certs)
    assert second_https != first_https
    assert second_grpc != first_grpc
    wait_until(lambda: _served(w.grpc_target, ["h2"]) == second_grpc, within=60.0)
    # Every front (--workers 2): ten fresh connections in a row.
    wait_until(lambda: all(_served(w.http_url) == second_https for _ in range(10)), within=60.0)
    ctx = tls.client_context(https.cert)
    assert post(w.webhook_url, samples.body("text"), ctx)[0] == 200

    # A certificate whose key was not rotated with it: refused, the pair in use kept.
    refused_https = w.stderr().count("HTTPS certificate not reloaded")
    refused_grpc = w.stderr().count("gRPC certificate not reloaded")
    _rotate(https, tmp_path / "s3", key_too=False)
    _rotate(grpc_certs, tmp_path / "s4", key_too=False)
    w.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: w.stderr().count("HTTPS certificate not reloaded") > refused_https, within=60.0
    )
    assert _served(w.grpc_target, ["h2"]) == second_grpc  # the handshake that looked
    wait_until(
        lambda: w.stderr().count("gRPC certificate not reloaded") > refused_grpc, within=60.0
    )
    assert all(_served(w.http_url) == second_https for _ in range(10))
    assert post(w.webhook_url, samples.body("text"), ctx)[0] == 200

    # Its key arrives: the next look loads the pair (SIGHUP here).
    os.replace(tmp_path / "s3" / "key.pem", https.key)
    w.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: all(_served(w.http_url) == _der(https) for _ in range(10)), within=60.0)
    assert _der(https) != second_https
    log = w.stderr()
    assert "HTTPS certificate reloaded" in log
    assert "gRPC certificate reloaded" in log
    assert "PRIVATE KEY" not in log
