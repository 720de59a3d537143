"""create_server with TLS credentials: the session's real certificate, a real TLS channel."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from test_rpc_support import message
from wahook.rpc.server import create_server
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import Certs


async def test_serves_over_tls(tmp_path: Path, certs: Certs) -> None:
    cert, key = certs.cert.read_bytes(), certs.key.read_bytes()
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    credentials = grpc.ssl_server_credentials([(key, cert)])
    handle = await create_server(log, credentials=credentials)
    port = handle.port
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
                await stub.GetEvent(service_pb2.GetEventRequest(id="evt_1"), timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await handle.shutdown(0.5)
        await log.close()
