"""create_server with TLS credentials: a real certificate made here, a real TLS channel."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_rpc_support import message
from wahook.rpc.server import create_server
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import service_pb2, service_pb2_grpc


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wahook test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_serves_over_tls(tmp_path: Path) -> None:
    cert, key = self_signed()
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    credentials = grpc.ssl_server_credentials([(key, cert)])
    _, port, handle = await create_server(log, credentials=credentials)
    try:
        stored = (await log.append([message(1)])).sequences
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=cert)
        ) as channel:
            stub = service_pb2_grpc.EventServiceStub(channel)
            response = await stub.GetEvent(service_pb2.GetEventRequest(id=message(1).id))
            assert response.event.sequence == stored[0]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            stub = service_pb2_grpc.EventServiceStub(plain)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetEvent(service_pb2.GetEventRequest(id="evt_1"), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await handle.shutdown(0.5)
        await log.close()
