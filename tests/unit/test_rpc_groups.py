"""Consumer groups over gRPC as a service relies on them, on SQLite and on a real Redis:
leases (a late ack never acks for the next holder; extension), dead letters (a poison
event leaves after max_delivery_attempts and can be redriven), and the lifecycle (list,
delete, seek, idle expiry) that lets an abandoned group stop holding back retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis_server import RedisServer, start_redis
from test_rpc_support import Rpc, message
from wahook.rpc.server import create_server
from wahook.store.base import EventLog
from wahook.store.redis import RedisEventLog
from wahook.store.retention import expire_idle_groups
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import service_pb2, service_pb2_grpc

DAY = 86400.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
async def rpc(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rpc]:
    log: EventLog
    if request.param == "sqlite":
        log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.client().flushdb()
        log = await RedisEventLog.open(server.url, prefix="rpcgroups")
    handle = await create_server(log, heartbeat_interval=0.2)
    port = handle.port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Rpc(log, handle, port, channel, service_pb2_grpc.EventServiceStub(channel))  # type: ignore[arg-type]
    finally:
        await channel.close()
        await handle.shutdown(0.5)
        await log.close()


def seconds(value: float) -> dict[str, int]:
    return {"seconds": int(value)}


async def call_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


# -- 2. an ack is bound to the delivery it answers ------------------------------------------


async def test_a_late_ack_is_confirmed_expired_and_never_acks_the_next_holder(rpc: Rpc) -> None:
    await rpc.log.append([message(1)])
    a = rpc.subscribe(consumer_group="g")
    [first] = await a.take(1)
    assert first.ack_id
    # a's stream ends before it acks (its lease ends, as when the deadline passes); b,
    # in the same group, gets the event again under a new ack id.
    await a.cancel()
    b = rpc.subscribe(consumer_group="g")
    [second] = await b.take(1)
    assert (second.event.sequence, second.attempt) == (first.event.sequence, 2)
    assert second.ack_id != first.ack_id
    # a's ack arrives late (any stream of the group may carry an ack id).
    b.send(service_pb2.SubscribeRequest(ack_ids=[first.ack_id]))
    late = await b.confirmation()
    assert (list(late.acked_ids), list(late.expired_ids)) == ([], [first.ack_id])
    assert await rpc.pending("g") == 1  # still b's
    b.send(service_pb2.SubscribeRequest(ack_ids=[second.ack_id]))
    assert list((await b.confirmation()).acked_ids) == [second.ack_id]
    await rpc.wait_pending("g", 0)
    # An ack by sequence (a client older than ack ids) acts only on what its stream holds.
    await rpc.log.append([message(2)])
    [third] = await b.take(1)
    c = rpc.subscribe(consumer_group="g")
    c.ack([third.event.sequence])
    c.send(service_pb2.SubscribeRequest(ack_ids=[first.ack_id]))  # a marker to wait on
    await c.confirmation()
    assert await rpc.pending("g") == 1
    b.ack([third.event.sequence])
    await rpc.wait_pending("g", 0)


async def test_an_ack_after_the_deadline_is_confirmed_expired_once_redelivered(
    rpc: Rpc,
) -> None:
    """The issue's case: a handler slower than its ack deadline acks after the event was
    delivered again; that ack must not clear the new delivery's lease."""
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g", ack_deadline=seconds(1))
    [first] = await sub.take(1)
    [second] = await sub.take(1, within=15.0)  # the deadline passed: delivered again
    assert (second.event.sequence, second.attempt) == (1, 2)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[first.ack_id]))
    assert list((await sub.confirmation()).expired_ids) == [first.ack_id]
    # Still pending (held under the second lease, or due again if that one ran out too:
    # with 1 s deadlines the test does not depend on which).
    assert await rpc.pending("g") == 1


async def test_acks_sent_just_before_a_half_close_are_confirmed(rpc: Rpc) -> None:
    """A client that acks and half-closes at once (wahook tail, the Python client at
    stop) still learns which acks took effect before the stream ends."""
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g")
    [delivery] = await sub.take(1)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[delivery.ack_id]))
    sub.half_close()
    assert list((await sub.confirmation()).acked_ids) == [delivery.ack_id]
    await rpc.wait_pending("g", 0)


async def test_an_ack_id_the_server_never_issued_is_invalid_argument(rpc: Rpc) -> None:
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g")
    await sub.take(1)
    sub.send(service_pb2.SubscribeRequest(ack_ids=["1-2-3"]))
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ack_ids[0]" in (error.details() or "")


# -- 5. a handler that needs longer says so -------------------------------------------------


async def test_modify_deadline_extends_a_lease_from_the_stream(rpc: Rpc) -> None:
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g")  # a 30 s deadline, extended to 600 s
    [d] = await sub.take(1)
    sub.send(
        service_pb2.SubscribeRequest(
            modify_deadlines=[service_pb2.ModifyDeadline(ack_id=d.ack_id, deadline=seconds(600))]
        )
    )
    assert list((await sub.confirmation()).modified_ids) == [d.ack_id]
    now = time.time()
    # Nobody else gets it before the new deadline, whatever the old one was ...
    assert (await rpc.log.fetch("g", "probe", 5, 30.0, now + 300)).deliveries() == []
    # ... and once that passes, it is delivered again.
    again = (await rpc.log.fetch("g", "probe", 5, 30.0, now + 601)).deliveries()
    assert [(x.event.sequence, x.attempt) for x in again] == [(d.event.sequence, 2)]
    sub.send(
        service_pb2.SubscribeRequest(
            modify_deadlines=[service_pb2.ModifyDeadline(ack_id=d.ack_id, deadline=seconds(60))]
        )
    )
    assert list((await sub.confirmation()).expired_ids) == [d.ack_id]
    sub.send(
        service_pb2.SubscribeRequest(
            modify_deadlines=[service_pb2.ModifyDeadline(ack_id=d.ack_id, deadline=seconds(0))]
        )
    )
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "modify_deadlines[0].deadline must be between 1s and 1h" in (error.details() or "")


# -- 4. a poison event is not redelivered for ever ------------------------------------------


async def test_a_poison_event_goes_to_the_dead_letters_and_can_be_redriven(rpc: Rpc) -> None:
    await rpc.log.append([message(1), message(2)])
    sub = rpc.subscribe(consumer_group="g", max_delivery_attempts=2, max_in_flight=1)
    for attempt in (1, 2):
        [d] = await sub.take(1)
        assert (d.event.sequence, d.attempt) == (1, attempt)
        nack = service_pb2.Nack(ack_id=d.ack_id, error=f"KeyError 'price' ({attempt})")
        sub.send(service_pb2.SubscribeRequest(nacks=[nack]))
        assert list((await sub.confirmation()).nacked_ids) == [d.ack_id]
    # A third delivery would pass 2 attempts: the group goes on with event 2.
    [d] = await sub.take(1)
    assert (d.event.sequence, d.attempt) == (2, 1)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[d.ack_id]))
    await sub.confirmation()
    dead = await rpc.stub.ListDeadLetters(service_pb2.ListDeadLettersRequest(consumer_group="g"))
    [letter] = dead.dead_letters
    assert (letter.event.sequence, letter.attempts) == (1, 2)
    assert letter.last_error == "KeyError 'price' (2)"
    assert letter.event.id == message(1).id
    info = (
        await rpc.stub.GetConsumerGroup(service_pb2.GetConsumerGroupRequest(consumer_group="g"))
    ).group
    assert (info.pending_count, info.dead_letter_count, info.max_delivery_attempts) == (0, 1, 2)
    assert rpc.handle.delivery_stats().dead_lettered == 1
    # Redriven after the fix: attempt 1 again, on the open stream.
    redo = await rpc.stub.RedeliverDeadLetters(
        service_pb2.RedeliverDeadLettersRequest(consumer_group="g", all=True)
    )
    assert redo.count == 1
    [d] = await sub.take(1)
    assert (d.event.sequence, d.attempt) == (1, 1)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[d.ack_id]))
    assert list((await sub.confirmation()).acked_ids) == [d.ack_id]
    await rpc.wait_pending("g", 0)


async def test_dead_letter_rpcs_check_their_arguments(rpc: Rpc) -> None:
    missing = await call_error(
        rpc.stub.DiscardDeadLetters(
            service_pb2.DiscardDeadLettersRequest(consumer_group="nope", all=True)
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g")
    await sub.take(1)
    for request, text in (
        (service_pb2.DiscardDeadLettersRequest(consumer_group="g"), "sequences (or all)"),
        (
            service_pb2.DiscardDeadLettersRequest(consumer_group="g", sequences=[1], all=True),
            "either sequences or all",
        ),
        (service_pb2.DiscardDeadLettersRequest(), "consumer_group is required"),
    ):
        error = await call_error(rpc.stub.DiscardDeadLetters(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert text in (error.details() or "")
    none = await rpc.stub.DiscardDeadLetters(
        service_pb2.DiscardDeadLettersRequest(consumer_group="g", sequences=[1])
    )
    assert none.count == 0


async def test_dead_letter_sequences_out_of_range_are_invalid_argument(rpc: Rpc) -> None:
    await rpc.log.append([message(1)])
    sub = rpc.subscribe(consumer_group="g")
    await sub.take(1)
    for call, request in (
        (rpc.stub.RedeliverDeadLetters, service_pb2.RedeliverDeadLettersRequest),
        (rpc.stub.DiscardDeadLetters, service_pb2.DiscardDeadLettersRequest),
    ):
        error = await call_error(call(request(consumer_group="g", sequences=[1, 2**64 - 1])))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "sequences: every sequence must be at most 9223372036854775807" in (
            error.details() or ""
        )
    await sub.cancel()


# -- 3. groups have a lifecycle ------------------------------------------------------------


async def test_groups_are_listed_deleted_and_a_deleted_groups_stream_ends(rpc: Rpc) -> None:
    await rpc.log.append([message(1)])
    subs = {name: rpc.subscribe(consumer_group=name) for name in ("c", "a", "b")}
    for sub in subs.values():
        await sub.take(1)
    page = await rpc.stub.ListConsumerGroups(service_pb2.ListConsumerGroupsRequest(page_size=2))
    assert [g.name for g in page.groups] == ["a", "b"]
    assert [g.connected_subscribers for g in page.groups] == [1, 1]
    rest = await rpc.stub.ListConsumerGroups(
        service_pb2.ListConsumerGroupsRequest(page_token=page.next_page_token)
    )
    assert ([g.name for g in rest.groups], rest.next_page_token) == (["c"], "")
    assert rest.groups[0].expire_after_idle.seconds == 7 * 86400
    await rpc.stub.DeleteConsumerGroup(service_pb2.DeleteConsumerGroupRequest(consumer_group="a"))
    error = await subs["a"].error()
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "was deleted" in (error.details() or "")
    again = await call_error(
        rpc.stub.DeleteConsumerGroup(service_pb2.DeleteConsumerGroupRequest(consumer_group="a"))
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND
    bad = await call_error(
        rpc.stub.ListConsumerGroups(service_pb2.ListConsumerGroupsRequest(page_token="x"))
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_seek_replays_since_a_bad_deploy(rpc: Rpc) -> None:
    await rpc.log.append([message(i) for i in range(1, 5)])
    sub = rpc.subscribe(consumer_group="g", max_in_flight=2)
    got = await sub.take(2)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[d.ack_id for d in got]))
    await sub.confirmation()
    got = await sub.take(2)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[d.ack_id for d in got]))
    await sub.confirmation()
    # message(n) was received at 1_700_000_000 + n: replay from message 3 on.
    sought = await rpc.stub.SeekConsumerGroup(
        service_pb2.SeekConsumerGroupRequest(
            consumer_group="g",
            position=service_pb2.StartPosition(from_time=seconds(1_700_000_003)),
        )
    )
    assert (sought.group.delivered_sequence, sought.group.lag) == (2, 2)
    replay = await sub.take(2)
    assert [(d.event.sequence, d.attempt) for d in replay] == [(3, 1), (4, 1)]
    # Seeking again while those are unacked (the stream's window full) replays at once.
    await rpc.stub.SeekConsumerGroup(
        service_pb2.SeekConsumerGroupRequest(
            consumer_group="g", position=service_pb2.StartPosition(after_sequence=3)
        )
    )
    [d] = await sub.take(1)
    assert (d.event.sequence, d.attempt) == (4, 1)
    sub.send(service_pb2.SubscribeRequest(ack_ids=[r.ack_id for r in replay]))
    assert list((await sub.confirmation()).expired_ids) == [r.ack_id for r in replay]
    unset = await call_error(
        rpc.stub.SeekConsumerGroup(service_pb2.SeekConsumerGroupRequest(consumer_group="g"))
    )
    assert unset.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = await call_error(
        rpc.stub.SeekConsumerGroup(
            service_pb2.SeekConsumerGroupRequest(
                consumer_group="nope", position=service_pb2.StartPosition(latest=True)
            )
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_an_abandoned_group_expires_and_stops_holding_back_retention(rpc: Rpc) -> None:
    old = [message(i) for i in range(1, 4)]
    await rpc.log.append(old)
    kept = rpc.subscribe(consumer_group="kept")
    gone = rpc.subscribe(consumer_group="abandoned")
    held = await kept.take(3)
    await gone.take(3)
    await gone.cancel()
    hub = rpc.handle.hub
    async with asyncio.timeout(5):
        while hub.connected("abandoned"):  # noqa: ASYNC110 - the server notices the cancel
            await asyncio.sleep(0.01)
    # Nothing is pruned while the abandoned group still holds its 3 events pending.
    assert await rpc.log.prune(time.time()) == 0
    later = time.time() + 7 * DAY + 1
    assert await expire_idle_groups(rpc.log, hub.groups(), later) == ["abandoned"]
    assert await rpc.log.group_info("abandoned") is None
    assert await rpc.log.group_info("kept") is not None  # its stream is open here
    kept.send(service_pb2.SubscribeRequest(ack_ids=[d.ack_id for d in held]))
    await kept.confirmation()
    assert await rpc.log.prune(time.time()) == 3
