"""What the Redis Streams event log does beyond the EventLog contract: several sidecar
replicas (here: several RedisEventLog instances) sharing one Redis, a password that never
reaches a log line, the WAIT option, and the Redis state it leaves behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import message, status
from redis_server import RedisServer, start_redis
from wahook.errors import InvalidArgumentError, LogUnavailableError
from wahook.store.base import EventFilter, StartPosition
from wahook.store.redis import RedisEventLog
from wahook.store.redis.append import mask_url
from wahook.v1 import status_pb2

NOW = 1_800_000_000.0


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisEventLog, RedisEventLog]]:
    redis_server.client().flushdb()
    a = await RedisEventLog.open(redis_server.url, prefix="r")
    b = await RedisEventLog.open(redis_server.url, prefix="r")
    yield a, b
    await a.close()
    await b.close()


async def test_a_meta_retry_racing_on_two_replicas_is_stored_once(
    replicas: tuple[RedisEventLog, RedisEventLog], redis_server: RedisServer
) -> None:
    a, b = replicas
    retry = [message(1), message(2), message(3)]
    results = await asyncio.gather(*(log.append(retry) for _ in range(20) for log in (a, b)))
    assert sum(r.new_count for r in results) == 3
    assert {tuple(r.sequences) for r in results} == {(1, 2, 3)}
    assert redis_server.client().xlen("r:events") == 3
    assert await a.head_sequence() == await b.head_sequence() == 3


async def test_replicas_sharing_a_group_split_the_events_and_redeliver_the_unacked(
    replicas: tuple[RedisEventLog, RedisEventLog],
) -> None:
    a, b = replicas
    s = (await a.append([message(i) for i in range(6)])).sequences
    await a.create_group("g", EventFilter(), StartPosition(), NOW)
    await b.create_group("g", EventFilter(), StartPosition(), NOW)
    on_a = await a.fetch("g", "a#1", 3, 10.0, NOW)
    on_b = await b.fetch("g", "b#1", 10, 10.0, NOW)
    assert (on_a.sequences, on_b.sequences) == (s[:3], s[3:])
    await a.ack_leases("g", [(q, on_a.lease) for q in on_a.sequences[:2]])
    await b.ack_leases("g", [(q, on_b.lease) for q in on_b.sequences])
    # Replica a's subscriber never acks its third event (say, a crashed pod): after the
    # deadline the other replica hands it out again, as a second attempt.
    assert (await b.fetch("g", "b#1", 10, 10.0, NOW + 9)).deliveries() == []
    again = (await b.fetch("g", "b#1", 10, 10.0, NOW + 10)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in again] == [(s[2], 2)]
    info = await a.group_info("g")
    assert info is not None
    assert (info.pending_count, info.lag, info.delivered_sequence) == (1, 0, s[-1])


async def test_wait_for_append_sees_another_replicas_append(
    replicas: tuple[RedisEventLog, RedisEventLog],
) -> None:
    a, b = replicas
    waiter = asyncio.create_task(a.wait_for_append(0, 600.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await b.append([message(1)])
    # Woken by the other replica's append: its own timeout is 10 minutes away.
    assert await asyncio.wait_for(waiter, 60) is True
    assert await a.wait_for_append(1, 0.1) is False


async def test_an_id_stored_for_another_dedupe_key_refuses_the_whole_append(
    replicas: tuple[RedisEventLog, RedisEventLog],
) -> None:
    a, b = replicas
    await a.append([message(1)])
    clash = message(2)
    clash.id = message(1).id
    with pytest.raises(InvalidArgumentError, match="another dedupe_key"):
        await b.append([message(3), clash])
    assert await a.get(message(3).id) is None
    assert await a.head_sequence() == 1
    # Appends batched with the refused one go on.
    ok, refused = await asyncio.gather(
        b.append([message(4)]), b.append([clash]), return_exceptions=True
    )
    assert not isinstance(ok, BaseException)
    assert ok.sequences == [2]
    assert isinstance(refused, InvalidArgumentError)


async def test_a_released_consumer_leaves_the_redis_group(
    replicas: tuple[RedisEventLog, RedisEventLog], redis_server: RedisServer
) -> None:
    a, _ = replicas
    await a.append([message(i) for i in range(3)])
    await a.create_group("g", EventFilter(), StartPosition(), NOW)
    await a.fetch("g", "sub#1", 2, 30.0, NOW)
    assert await a.release("g", "sub#1", NOW + 1) == 2
    names = {c["name"] for c in redis_server.client().xinfo_consumers("r:events", "g")}
    assert b"sub#1" not in names
    got = (await a.fetch("g", "sub#2", 10, 30.0, NOW + 1)).deliveries()
    assert [d.attempt for d in got] == [2, 2, 1]


async def test_prune_leaves_no_id_or_status_keys_behind(
    replicas: tuple[RedisEventLog, RedisEventLog], redis_server: RedisServer
) -> None:
    a, _ = replicas
    await a.append([message(1), status(2, "wamid.OUT9", status_pb2.DELIVERY_STATE_SENT, 1)])
    assert await a.prune(2_000_000_000.0) == 2
    r = redis_server.client()
    assert r.hlen("r:ids") == 0
    assert r.xlen("r:events") == 0
    assert sorted(r.keys("r:*")) == [b"r:events", b"r:head"]


async def test_wait_replicas_refuses_an_append_no_replica_acknowledged(
    redis_server: RedisServer,
) -> None:
    redis_server.client().flushdb()
    log = await RedisEventLog.open(redis_server.url, prefix="w", wait_replicas=1, wait_timeout=0.1)
    try:
        with pytest.raises(LogUnavailableError, match="0 of 1 Redis replicas"):
            await log.append([message(1)])
    finally:
        await log.close()


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("redis://:s3cret@redis.internal:6379/0") == "redis://:***@redis.internal:6379/0"
    assert mask_url("rediss://app:s3cret@h/2") == "rediss://app:***@h/2"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("redis://user@h/0") == "redis://user@h/0"
    assert mask_url("redis://:p@ss:w0rd@h:bad/0") == "redis://:***@h:bad/0"


async def test_a_password_in_the_url_never_reaches_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_redis(tmp_path / "redis", password="hunter2-pw")
    try:
        caplog.set_level(logging.DEBUG)
        log = await RedisEventLog.open(f"redis://:hunter2-pw@127.0.0.1:{server.port}/0")
        await log.append([message(1)])
        await log.close()
        with pytest.raises(LogUnavailableError) as refused:
            await RedisEventLog.open(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
        assert "wrong-pw" not in str(refused.value)
        assert ":***@127.0.0.1" in str(refused.value)
    finally:
        server.stop()
    with pytest.raises(LogUnavailableError) as down:
        log = await RedisEventLog.open(f"redis://:hunter2-pw@127.0.0.1:{server.port}/0")
    assert "hunter2-pw" not in str(down.value)
    assert "hunter2-pw" not in caplog.text


async def test_prune_forgets_idle_consumers_that_hold_nothing(redis_server: RedisServer) -> None:
    redis_server.client().flushdb()
    log = await RedisEventLog.open(redis_server.url, prefix="i", forget_idle_consumers_after=0)
    try:
        s = (await log.append([message(1), message(2)])).sequences
        await log.create_group("g", EventFilter(), StartPosition(), NOW)
        await log.fetch("g", "gone#1", 1, 30.0, NOW)  # a replica died holding s[0]...
        held = await log.fetch("g", "gone#2", 1, 30.0, NOW)
        await log.ack_leases("g", [(s[1], held.lease)])  # ...while this consumer acked all it had
        await log.prune(0.0)
        names = {c["name"] for c in redis_server.client().xinfo_consumers("i:events", "g")}
        assert names == {b"gone#1"}
        again = (await log.fetch("g", "c", 10, 30.0, NOW + 30)).deliveries()
        assert [(d.event.sequence, d.attempt) for d in again] == [(s[0], 2)]
    finally:
        await log.close()


async def test_a_redis_crash_fails_appends_until_it_is_back_and_loses_nothing_answered(
    tmp_path: Path,
) -> None:
    # Its own server: this one is killed (SIGKILL, no shutdown save) and started again on
    # the same port and directory, as a restarted Redis would be. With the AOF fsynced
    # at every write, what append returned for survives; meanwhile appends fail with
    # LogUnavailableError (a 503 to Meta, which retries); afterwards the same log object
    # works again without being reopened.
    directory = tmp_path / "redis"
    server = start_redis(directory)
    log = await RedisEventLog.open(server.url, prefix="c")
    try:
        first = await log.append([message(1), message(2)])
        assert first.sequences == [1, 2]
        server.crash()
        with pytest.raises(LogUnavailableError):
            await log.append([message(3)])
        server.restart()
        again = await log.append([message(3)])
        assert again.sequences == [3]  # the failed attempt consumed no sequence
        assert [e.id for e in await log.list_events(EventFilter(), 0, 0, 10)] == [
            message(n).id for n in (1, 2, 3)
        ]
    finally:
        await log.close()
        server.stop()
