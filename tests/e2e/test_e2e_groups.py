"""End to end: the largest webhook Meta may send reaches a subscriber, and never wedges a
consumer group whose client accepts less (`wahook serve` on SQLite and on Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_helpers import collect, post
from redis_server import RedisServer, start_redis
from wahook import samples
from wahook.client import Subscriber
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
    # /metrics counts it (the counter an operator alerts on).
    status, page = post(sidecar.http_url + "/metrics", b"", ctx, method="GET", signature=None)
    assert status == 200
    assert "\nwahook_events_dead_lettered_total 1\n" in page.decode(), page.decode()
    assert sidecar.terminate() == 0
    assert "event 1 dead-lettered" in sidecar.stderr()


async def wait_dead_letters(target: str, group: str, count: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        request = service_pb2.GetConsumerGroupRequest(consumer_group=group)
        async with asyncio.timeout(20):
            while (await stub.GetConsumerGroup(request)).group.dead_letter_count != count:  # noqa: ASYNC110 - polls the sidecar
                await asyncio.sleep(0.05)


def wahook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wahook.cli", *args],
        env={k: v for k, v in os.environ.items() if not k.startswith("WAHOOK_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_groups_cli_and_a_tail_without_group_leaves_no_group(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    sidecar = wahook_factory.start(tmp_path / "w")
    target = ["--target", sidecar.grpc_target]
    assert post(sidecar.webhook_url, samples.body("text"), certs.client_context())[0] == 200
    tail = wahook("tail", "--count", "1", "--timeout", "30", *target)
    assert tail.returncode == 0, tail.stderr
    assert json.loads(tail.stdout)["sequence"] == "1"
    listed = wahook("groups", "list", *target)
    assert (listed.returncode, listed.stdout) == (0, "")  # the tail's group is gone

    assert wahook("tail", "--group", "demo", "--count", "1", "--timeout", "30", *target).stdout
    [demo] = [json.loads(line) for line in wahook("groups", "list", *target).stdout.splitlines()]
    assert (demo["name"], demo["deliveredSequence"], demo["maxDeliveryAttempts"]) == (
        "demo",
        "1",
        10,
    )
    sought = wahook("groups", "seek", "demo", "--to", "earliest", *target)
    assert sought.returncode == 0, sought.stderr
    assert "deliveredSequence" not in json.loads(sought.stdout)  # 0
    replay = wahook("tail", "--group", "demo", "--count", "1", "--timeout", "30", *target)
    assert json.loads(replay.stdout)["sequence"] == "1"

    # A poison event: one attempt allowed, nacked with the handler's error.
    sub = Subscriber(sidecar.grpc_target, "poison", max_delivery_attempts=1)
    async for delivery in sub:
        await sub.nack(delivery, error="ValueError: no price")
        break
    await sub.stop()
    # The next fetch (a subscriber's) finds its attempts spent and dead-letters it.
    async with Subscriber(sidecar.grpc_target, "poison") as again:
        await wait_dead_letters(sidecar.grpc_target, "poison", 1)
        assert again.reconnects == 0
    listed_dead = wahook("groups", "dead-letters", "poison", *target)
    [letter] = [json.loads(line) for line in listed_dead.stdout.splitlines()]
    assert (letter["event"]["sequence"], letter["attempts"]) == ("1", 1)
    assert letter["lastError"] == "ValueError: no price"
    redo = wahook("groups", "dead-letters", "poison", "--redeliver-all", *target)
    assert "1 dead letters of poison to be delivered again" in redo.stderr
    assert [d.attempt for d in await collect(sidecar.grpc_target, "poison", 1)] == [1]
    none = wahook("groups", "dead-letters", "poison", "--discard", "1", *target)
    assert "0 dead letters of poison discarded" in none.stderr  # it was redelivered

    deleted = wahook("groups", "delete", "demo", *target)
    assert (deleted.returncode, deleted.stderr.strip()) == (0, "deleted consumer group demo")
    names = [json.loads(x)["name"] for x in wahook("groups", "list", *target).stdout.split()]
    assert names == ["poison"]
    missing = wahook("groups", "delete", "demo", *target)
    assert missing.returncode == 1
    assert "NOT_FOUND: no consumer group 'demo'" in missing.stderr
    bad = wahook("groups", "seek", "poison", "--to", "yesterday", *target)
    assert bad.returncode == 2
    assert "--to:" in bad.stderr
    assert sidecar.terminate() == 0
