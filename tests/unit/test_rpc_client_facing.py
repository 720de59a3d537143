"""What a client in any language meets first, over a real server and channel: Subscribe's
response headers at once (not with the first event or heartbeat), and server reflection
under both names, grpc.reflection.v1 and v1alpha."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from test_rpc_support import running
from wahook.v1 import service_pb2


async def test_subscribe_sends_its_headers_before_any_response(tmp_path: Path) -> None:
    # No event and the first heartbeat 10 minutes away: only the headers can arrive.
    async with running(tmp_path, heartbeat_interval=600.0) as rpc:
        sub = rpc.subscribe(consumer_group="opens")  # its request stream stays open
        await asyncio.wait_for(sub.call.initial_metadata(), 60)
        assert not sub.call.done()  # open, not ended with an error
        # Sent once the group exists: a client that saw the headers is subscribed.
        assert await rpc.log.group_info("opens") is not None
        await sub.cancel()


async def test_a_refused_subscription_sends_no_headers_first(tmp_path: Path) -> None:
    async with running(tmp_path) as rpc:
        options = service_pb2.SubscribeOptions(consumer_group="not a group")
        call = rpc.stub.Subscribe(iter([service_pb2.SubscribeRequest(options=options)]))
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(await call.initial_metadata()) == []


async def _reflect(
    channel: grpc.aio.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    # v1's messages are v1alpha's under another package name: the same bytes on the wire.
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([request]))
    response = await call.read()
    assert isinstance(response, reflection_pb2.ServerReflectionResponse)
    return response


async def test_reflection_answers_as_v1_and_v1alpha(tmp_path: Path) -> None:
    async with running(tmp_path) as rpc:
        for service in (
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ):
            listed = await _reflect(
                rpc.channel, service, reflection_pb2.ServerReflectionRequest(list_services="")
            )
            names = {s.name for s in listed.list_services_response.service}
            assert names == {
                "wahook.v1.EventService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            }
            found = await _reflect(
                rpc.channel,
                service,
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="wahook.v1.EventService"
                ),
            )
            files = [
                descriptor_pb2.FileDescriptorProto.FromString(raw)
                for raw in found.file_descriptor_response.file_descriptor_proto
            ]
            assert "wahook/v1/service.proto" in {f.name for f in files}
