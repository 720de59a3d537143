"""The unary EventService rpcs, health and reflection, over a real server and channel."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_rpc_support import Rpc, message, running, status
from wahook.store.base import EventFilter, StartPosition
from wahook.v1 import event_pb2, service_pb2
from wahook.v1 import status_pb2 as S


@pytest.fixture
async def rpc(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running(tmp_path) as r:
        yield r


async def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code(), info.value.details() or ""


async def test_get_event(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(1), message(2)])).sequences
    response = await rpc.stub.GetEvent(service_pb2.GetEventRequest(id=message(2).id))
    assert response.event.sequence == stored[1]
    assert response.event.message.id == message(2).message.id
    code, details = await code_of(rpc.stub.GetEvent(service_pb2.GetEventRequest(id="evt_none")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "evt_none" in details
    code, details = await code_of(rpc.stub.GetEvent(service_pb2.GetEventRequest()))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "id is required")


async def test_list_events_pages_through_everything(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(25)])).sequences
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await rpc.stub.ListEvents(
            service_pb2.ListEventsRequest(page_size=10, page_token=token)
        )
        pages += 1
        seen.extend(e.sequence for e in page.events)
        token = page.next_page_token
        if not token:
            break
    assert seen == stored
    assert pages == 3


async def test_list_events_filter_range_and_default_size(rpc: Rpc) -> None:
    stored = (
        await rpc.log.append(
            [message(1), status(2, "wamid.OUT1", S.DELIVERY_STATE_SENT, 5), message(3)]
        )
    ).sequences
    page = await rpc.stub.ListEvents(
        service_pb2.ListEventsRequest(filter={"event_types": [event_pb2.EVENT_TYPE_MESSAGE]})
    )
    assert [e.sequence for e in page.events] == [stored[0], stored[2]]
    assert page.next_page_token == ""
    ranged = await rpc.stub.ListEvents(
        service_pb2.ListEventsRequest(after_sequence=stored[0], until_sequence=stored[1])
    )
    assert [e.sequence for e in ranged.events] == [stored[1]]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"page_token": "not a token!"}, "page_token"),
        ({"page_token": base64.urlsafe_b64encode(b"seq:abc").decode()}, "page_token"),
        ({"page_token": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "page_token"),
        ({"after_sequence": 5, "until_sequence": 2}, "until_sequence"),
        ({"filter": {"event_types": [42]}}, "filter.event_types[0]"),
    ],
)
async def test_list_events_rejects_bad_requests(
    rpc: Rpc,
    request_fields: dict,  # type: ignore[type-arg]
    field: str,
) -> None:
    code, details = await code_of(
        rpc.stub.ListEvents(service_pb2.ListEventsRequest(**request_fields))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details


async def test_get_message_status_with_history(rpc: Rpc) -> None:
    wamid = "wamid.OUT000009"
    await rpc.log.append([status(1, wamid, S.DELIVERY_STATE_READ, 300)])
    await rpc.log.append([status(2, wamid, S.DELIVERY_STATE_DELIVERED, 200)])
    response = await rpc.stub.GetMessageStatus(
        service_pb2.GetMessageStatusRequest(message_id=wamid)
    )
    assert response.message_id == wamid
    assert response.state == S.DELIVERY_STATE_READ
    assert response.state_time.seconds == 300
    assert response.recipient_id == "15550105678"
    assert [(h.state, h.occurred_time.seconds, h.applied) for h in response.history] == [
        (S.DELIVERY_STATE_READ, 300, True),
        (S.DELIVERY_STATE_DELIVERED, 200, False),
    ]
    code, _ = await code_of(
        rpc.stub.GetMessageStatus(service_pb2.GetMessageStatusRequest(message_id="wamid.NONE"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(rpc.stub.GetMessageStatus(service_pb2.GetMessageStatusRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_consumer_group(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(5)])).sequences
    flt = EventFilter(event_types=frozenset({event_pb2.EVENT_TYPE_MESSAGE}))
    await rpc.log.create_group("audit", flt, StartPosition(), 1_800_000_000.5)
    await rpc.log.fetch("audit", "c", 2, 30.0, 1_800_000_001.0)
    response = await rpc.stub.GetConsumerGroup(
        service_pb2.GetConsumerGroupRequest(consumer_group="audit")
    )
    group = response.group
    assert group.name == "audit"
    assert list(group.filter.event_types) == [event_pb2.EVENT_TYPE_MESSAGE]
    assert (group.delivered_sequence, group.pending_count, group.lag) == (stored[1], 2, 3)
    assert group.head_sequence == stored[-1]
    assert (group.create_time.seconds, group.create_time.nanos) == (1_800_000_000, 500_000_000)
    assert group.connected_subscribers == 0
    code, _ = await code_of(
        rpc.stub.GetConsumerGroup(service_pb2.GetConsumerGroupRequest(consumer_group="nope"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(rpc.stub.GetConsumerGroup(service_pb2.GetConsumerGroupRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_unexpected_error_is_internal_without_details(
    rpc: Rpc, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event_id: str) -> None:
        raise RuntimeError("secret library detail")

    monkeypatch.setattr(rpc.log, "get", broken)
    code, details = await code_of(rpc.stub.GetEvent(service_pb2.GetEventRequest(id="evt_1")))
    assert (code, details) == (grpc.StatusCode.INTERNAL, "internal error")
    assert "secret library detail" in caplog.text  # logged on our side only


async def test_log_unavailable_is_unavailable(rpc: Rpc) -> None:
    await rpc.log.close()
    code, _ = await code_of(rpc.stub.GetEvent(service_pb2.GetEventRequest(id="evt_1")))
    assert code == grpc.StatusCode.UNAVAILABLE
    sub = rpc.subscribe(consumer_group="late")
    assert (await sub.error()).code() == grpc.StatusCode.UNAVAILABLE


async def test_health_and_reflection(rpc: Rpc) -> None:
    health = health_pb2_grpc.HealthStub(rpc.channel)
    for service in ("", "wahook.v1.EventService"):
        check = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(rpc.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    response = await call.read()
    names = {s.name for s in response.list_services_response.service}
    assert "wahook.v1.EventService" in names
    assert "grpc.health.v1.Health" in names


async def test_new_subscribe_during_shutdown_is_unavailable(rpc: Rpc) -> None:
    await rpc.handle.hub.close(0.1)
    sub = rpc.subscribe(consumer_group="too-late")
    error = await sub.error()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
