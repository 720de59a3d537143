"""The servicer's hand-written method table against service.proto's descriptor: every rpc
registered, with its streaming kind, its request and response messages, and its method."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import symbol_database
from wahook.rpc.servicer import SERVICE_NAME, EventService
from wahook.rpc.subscribe import Hub
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import service_pb2

SERVICE = service_pb2.DESCRIPTOR.services_by_name["EventService"]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[EventService]:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    yield EventService(
        log, Hub(time.time), clock=time.time, heartbeat_interval=5.0, max_response_bytes=1 << 20
    )
    await log.close()


async def test_every_rpc_of_the_proto_is_registered_and_nothing_else(
    service: EventService,
) -> None:
    assert SERVICE.full_name == SERVICE_NAME
    assert sorted(service.method_handlers()) == sorted(m.name for m in SERVICE.methods)


@pytest.mark.parametrize("name", [m.name for m in SERVICE.methods])
async def test_each_rpc_has_the_proto_s_streaming_kind_messages_and_method(
    service: EventService, name: str
) -> None:
    method = SERVICE.methods_by_name[name]
    handler = service.method_handlers()[name]
    assert handler.request_streaming == method.client_streaming
    assert handler.response_streaming == method.server_streaming
    kind = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    assert getattr(handler, kind) == getattr(service, name)
    db = symbol_database.Default()
    request = db.GetSymbol(method.input_type.full_name)()
    response = db.GetSymbol(method.output_type.full_name)()
    assert handler.request_deserializer is not None
    parsed = handler.request_deserializer(request.SerializeToString())
    assert parsed.DESCRIPTOR.full_name == method.input_type.full_name
    assert handler.response_serializer is not None
    assert handler.response_serializer(response) == response.SerializeToString()
    # Pre-serialised responses (Subscribe's batches) pass through as they are.
    assert handler.response_serializer(b"\x08\x01") == b"\x08\x01"
