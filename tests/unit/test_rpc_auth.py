"""gRPC gate: bearer tokens on every call but health (with rotation), mutual TLS, the
stream cap, range-checked request fields, and no ERROR for a client that hangs up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_rpc_support import Rpc, message, running
from wahook import tls
from wahook.errors import ConfigError
from wahook.rpc.auth import TokenSet
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import Certs

BIG = 2**64 - 1


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def status_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


async def test_token_required_on_every_rpc_but_health_and_rotates(tmp_path: Path) -> None:
    tokens = TokenSet(["old-token"])
    async with running(tmp_path, tokens=tokens) as rpc:
        await rpc.log.append([message(1)])
        ask = service_pb2.ListEventsRequest()
        assert await status_of(rpc.stub.ListEvents(ask)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = rpc.stub.ListEvents(ask, metadata=bearer("old-tokeN"))
        assert await status_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
        assert len((await rpc.stub.ListEvents(ask, metadata=bearer("old-token"))).events) == 1
        # Subscribe, a stream, is refused the same way, before the servicer sees it.
        stream = rpc.stub.Subscribe()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.read()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert rpc.handle.gate.refused == 3
        # Probes carry no credentials: health stays open.
        health = health_pb2_grpc.HealthStub(rpc.channel)
        check = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        # Rotation: both accepted while clients move, then the old one withdrawn.
        tokens.replace(["new-token", "old-token"])
        for t in ("new-token", "old-token"):
            await rpc.stub.ListEvents(ask, metadata=bearer(t))
        tokens.replace(["new-token"])
        old = rpc.stub.ListEvents(ask, metadata=bearer("old-token"))
        assert await status_of(old) == grpc.StatusCode.UNAUTHENTICATED
        await rpc.stub.ListEvents(ask, metadata=bearer("new-token"))


def test_token_set_compares_whole_bearer_values() -> None:
    tokens = TokenSet(["abc", ""])
    assert tokens.required
    assert tokens.accepts("Bearer abc")
    assert not tokens.accepts("abc")
    assert not tokens.accepts("Bearer ab")
    assert not tokens.accepts(None)
    assert not TokenSet([]).required


async def test_mutual_tls_refuses_a_client_without_a_trusted_certificate(
    tmp_path: Path, certs: Certs
) -> None:
    client = Certs(tmp_path / "client.pem", tmp_path / "client.key")
    tls.generate_self_signed(client.cert, client.key, hosts=("subscriber",))
    credentials = tls.grpc_server_credentials(certs.cert, certs.key, client.cert)
    async with running(tmp_path, credentials=credentials) as rpc:
        target = f"localhost:{rpc.port}"
        anonymous = grpc.ssl_channel_credentials(root_certificates=certs.cert.read_bytes())
        async with grpc.aio.secure_channel(target, anonymous) as ch:
            call = service_pb2_grpc.EventServiceStub(ch).ListEvents(
                service_pb2.ListEventsRequest(), timeout=10
            )
            assert await status_of(call) == grpc.StatusCode.UNAVAILABLE  # handshake refused
        known = grpc.ssl_channel_credentials(
            root_certificates=certs.cert.read_bytes(),
            private_key=client.key.read_bytes(),
            certificate_chain=client.cert.read_bytes(),
        )
        async with grpc.aio.secure_channel(target, known) as ch:
            stub = service_pb2_grpc.EventServiceStub(ch)
            assert (await stub.ListEvents(service_pb2.ListEventsRequest(), timeout=10)).events == []


def test_missing_grpc_tls_files_are_named(tmp_path: Path, certs: Certs) -> None:
    with pytest.raises(ConfigError, match=f"TLS client CA file not found: {tmp_path}/ca.pem"):
        tls.grpc_server_credentials(certs.cert, certs.key, tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match=f"TLS key file not found: {tmp_path}/k.pem"):
        tls.server_context(certs.cert, tmp_path / "k.pem")


async def test_streams_past_the_cap_are_resource_exhausted(tmp_path: Path) -> None:
    async with running(tmp_path, max_streams=2) as rpc:
        first, second = rpc.subscribe(consumer_group="a"), rpc.subscribe(consumer_group="b")
        await first._next(10)  # a heartbeat: both are open
        await second._next(10)
        error = await rpc.subscribe(consumer_group="c").error(10)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "allows 2" in (error.details() or "")
        await first.cancel()
        async with asyncio.timeout(10):
            while rpc.handle.gate.streams > 1:  # noqa: ASYNC110 (a counter)
                await asyncio.sleep(0.01)
        fourth = rpc.subscribe(consumer_group="d")
        await fourth._next(10)
        await second.cancel()
        await fourth.cancel()


@pytest.mark.parametrize(
    "request_",
    [
        service_pb2.ListEventsRequest(after_sequence=BIG),
        service_pb2.ListEventsRequest(until_sequence=BIG),
    ],
)
async def test_out_of_range_sequences_are_invalid_argument(
    rpc_server: Rpc, request_: service_pb2.ListEventsRequest
) -> None:
    call = rpc_server.stub.ListEvents(request_)
    assert await status_of(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_subscribe_out_of_range_fields_are_invalid_argument(rpc_server: Rpc) -> None:
    sub = rpc_server.subscribe(
        consumer_group="g", start=service_pb2.StartPosition(after_sequence=BIG)
    )
    error = await sub.error(10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "start.after_sequence" in (error.details() or "")
    for bad in (
        service_pb2.SubscribeRequest(ack_sequences=[1, BIG]),
        service_pb2.SubscribeRequest(nacks=[service_pb2.Nack(sequence=BIG)]),
    ):
        sub = rpc_server.subscribe(consumer_group="g")
        await sub._next(10)
        sub.send(bad)
        got = await sub.error(10)
        assert got.code() == grpc.StatusCode.INVALID_ARGUMENT, got


async def test_huge_ids_are_invalid_argument_not_a_broken_status(rpc_server: Rpc) -> None:
    huge = "x" * (1024 * 1024)
    for call in (
        rpc_server.stub.GetEvent(service_pb2.GetEventRequest(id=huge)),
        rpc_server.stub.GetMessageStatus(service_pb2.GetMessageStatusRequest(message_id=huge)),
        rpc_server.stub.GetConsumerGroup(service_pb2.GetConsumerGroupRequest(consumer_group=huge)),
    ):
        assert await status_of(call) == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_subscriber_hanging_up_logs_no_error(
    rpc_server: Rpc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events = []
    for n in range(1, 2001):
        event = message(n)
        event.raw_json = "x" * 4000
        events.append(event)
    await rpc_server.log.append(events)
    # A reader that never reads: the server's writes back up, then the client hangs up
    # with writes pending, which grpc reported as an ERROR with a traceback.
    call = rpc_server.stub.Subscribe()
    await call.write(
        service_pb2.SubscribeRequest(
            options=service_pb2.SubscribeOptions(consumer_group="g", max_in_flight=5000)
        )
    )
    async with asyncio.timeout(10):
        while rpc_server.handle.hub.stats.delivered < 2000:  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.01)
    call.cancel()
    async with asyncio.timeout(10):
        while rpc_server.handle.hub.total():  # noqa: ASYNC110 (a counter)
            await asyncio.sleep(0.01)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.fixture
async def rpc_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running(tmp_path) as r:
        yield r
