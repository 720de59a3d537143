"""End to end: the largest webhook Meta may send reaches a subscriber, and never wedges a
consumer group whose client accepts less (`wahook serve` on SQLite and on Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_helpers import collect, post
from redis_server import RedisServer, start_redis
from wahook import samples
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import Certs, WahookFactory

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    redis: RedisServer = start_redis(tmp_path / "redis")
    try:
        yield {"WAHOOK_STORE": redis.url}
    finally:
        redis.stop()


def huge_text_body(size: int) -> bytes:
    """A signed-as-Meta-sends-it single text message whose body is ``size`` bytes."""
    payload = samples.payload("text", message_id="wamid.HUGE0001")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]  # type: ignore[index]
    message["text"]["body"] = ""
    empty = len(json.dumps(payload, separators=(",", ":")))
    message["text"]["body"] = "x" * (size - empty)
    body = json.dumps(payload, separators=(",", ":")).encode()
    assert len(body) == size
    return body


async def test_a_3_mb_message_is_delivered_and_never_wedges_a_smaller_client(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs, store_env: dict[str, str]
) -> None:
    sidecar = wahook_factory.start(tmp_path / "w", env=store_env)
    ctx = certs.client_context()
    body = huge_text_body(3_000_000)
    assert post(sidecar.webhook_url, body, ctx)[0] == 200
    assert post(sidecar.webhook_url, samples.body("text"), ctx)[0] == 200
    # The Python client's defaults take the ~6 MB event (typed text plus its raw JSON).
    got = await collect(sidecar.grpc_target, "big", 2)
    assert [d.event.sequence for d in got] == [1, 2]
    assert got[0].event.ByteSize() > 4 * MIB
    text = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]
    assert got[0].event.message.text.body == text
    # A client left at gRPC's default 4 MiB: the event is dead-lettered with the reason,
    # and the group goes on with the next one instead of failing on it for ever.
    small = await collect(sidecar.grpc_target, "small", 1, quiet=0.5, max_receive_bytes=4 * MIB)
    assert [d.event.sequence for d in small] == [2]
    options = [("grpc.max_receive_message_length", 9 * MIB)]  # a dead letter has its event
    async with grpc.aio.insecure_channel(sidecar.grpc_target, options=options) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        dead = await stub.ListDeadLetters(
            service_pb2.ListDeadLettersRequest(consumer_group="small")
        )
        group = await stub.GetConsumerGroup(
            service_pb2.GetConsumerGroupRequest(consumer_group="small")
        )
    [letter] = dead.dead_letters
    assert letter.event.sequence == 1
    assert letter.attempts == 1
    assert "does not fit in the subscriber's max_receive_bytes (4194304)" in letter.last_error
    assert (group.group.pending_count, group.group.dead_letter_count) == (0, 1)
    assert sidecar.terminate() == 0
    assert "event 1 dead-lettered" in sidecar.stderr()
