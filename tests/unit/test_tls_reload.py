"""wahook.tls: certificates loaded again when their files change, a bad pair refused."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
import pytest
from wahook import tls


def _pair(directory: Path) -> tuple[Path, Path]:
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    tls.generate_self_signed(cert, key)
    return cert, key


def test_the_https_context_reloads_a_changed_pair_and_refuses_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wahook")
    cert, key = _pair(tmp_path / "a")
    https = tls.ReloadingServerContext(cert, key)
    context = https.context
    assert https.reload_if_changed() is False  # nothing changed
    new_cert, new_key = _pair(tmp_path / "b")
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    assert https.reload_if_changed() is True
    assert https.context is context  # the live context, loaded again
    assert https.reload_if_changed() is False
    # A certificate without its key: refused, and tried again at the next look.
    other_cert, other_key = _pair(tmp_path / "c")
    os.replace(other_cert, cert)
    assert https.reload_if_changed() is False
    assert "HTTPS certificate not reloaded" in caplog.text
    os.replace(other_key, key)
    assert https.reload_if_changed() is True
    assert "HTTPS certificate reloaded" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_grpc_fetches_a_new_configuration_only_when_the_files_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wahook")
    cert, key = _pair(tmp_path / "a")
    ca, _ = _pair(tmp_path / "ca")
    files = tls._GrpcFiles(cert, key, ca)
    assert isinstance(tls.grpc_server_credentials(cert, key, ca), grpc.ServerCredentials)
    assert files.fetch() is None
    new_cert, new_key = _pair(tmp_path / "b")
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    assert isinstance(files.fetch(), grpc.ServerCertificateConfiguration)
    assert files.fetch() is None
    ca.write_text("not a certificate\n")  # a client CA that does not load: kept as it was
    assert files.fetch() is None
    assert "gRPC certificate not reloaded" in caplog.text
    other_cert, _ = _pair(tmp_path / "c")
    os.replace(other_cert, cert)  # and a certificate without its key
    assert files.fetch() is None
    key.unlink()  # a file gone mid-rotation
    assert files.fetch() is None
    assert "PRIVATE KEY" not in caplog.text
