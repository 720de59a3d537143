"""The Python Subscriber against a real grpc.aio server and SqliteEventLog in the test's loop:
acks, nacks, flushing on stop, reconnecting after the server goes away, fatal errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from wahook import samples
from wahook.client import Subscriber, start_position
from wahook.core.normalize import normalize
from wahook.rpc.server import RpcHandle, create_server
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2, service_pb2
from wahook_testkit import free_port


@dataclass
class Live:
    log: SqliteEventLog
    rpc: RpcHandle
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def add(self, n: int, kind: str = "text") -> list[int]:
        events = [e for _ in range(n) for e in normalize(samples.body(kind), 1.0)]
        return (await self.log.append(events)).sequences


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    rpc = await create_server(log, "127.0.0.1", free_port(), heartbeat_interval=0.2)
    port = rpc.port
    yield Live(log, rpc, port)
    await rpc.shutdown(0.5)
    await log.close()


async def until(condition: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    """Wait for ``condition`` (polled), however slow the machine; ``within`` bounds a hang."""
    async with asyncio.timeout(within):
        while True:
            ok = condition()
            if ok if isinstance(ok, bool) else await ok:
                return
            await asyncio.sleep(0.01)


async def group_exists(log: SqliteEventLog, group: str) -> bool:
    return await log.group_info(group) is not None


async def nothing_pending(log: SqliteEventLog, group: str) -> bool:
    info = await log.group_info(group)
    return info is not None and info.pending_count == 0


async def take(sub: Subscriber, n: int, timeout: float = 10.0) -> list[service_pb2.Delivery]:  # noqa: ASYNC109
    got: list[service_pb2.Delivery] = []
    async with asyncio.timeout(timeout):
        async for d in sub:
            got.append(d)
            if len(got) >= n:
                break
    return got


async def test_delivers_typed_events_and_acks(live: Live) -> None:
    seqs = await live.add(3)
    async with Subscriber(live.target, "g") as sub:
        got = await take(sub, 3)
        for d in got:
            assert d.event.WhichOneof("payload") == "message"
            assert d.attempt == 1
            await sub.ack(d)
    assert [d.event.sequence for d in got] == seqs
    info = await live.log.group_info("g")
    assert info is not None
    assert info.pending_count == 0  # stop() flushed the acks before closing


async def test_counts_what_the_server_confirmed_and_stops_once_it_did(live: Live) -> None:
    await live.add(3)
    async with Subscriber(live.target, "g") as sub:
        a, b, c = await take(sub, 3)
        await sub.extend(c, 60.0)
        await until(lambda: sub.confirmed_extensions == 1)
        await sub.ack(a)
        await sub.nack(b, delay=60.0, error="why")
        await sub.ack(c)
        # Leaving at once: stop() half-closes only after the server confirmed these.
    counts = (sub.confirmed_acks, sub.confirmed_nacks, sub.confirmed_extensions)
    assert (*counts, sub.expired_acks) == (2, 1, 1, 0)
    info = await live.log.group_info("g")
    assert info is not None
    assert info.pending_count == 1  # the nacked one


async def test_stop_sends_an_ack_made_while_an_earlier_one_was_being_written(
    live: Live,
) -> None:
    await live.add(2)
    async with Subscriber(live.target, "g") as sub:
        a, b = await take(sub, 2)
        await sub.ack(a)
        await asyncio.sleep(0)  # the writer takes a's ack and starts writing it
        await sub.ack(b)
    assert sub.confirmed_acks == 2
    assert await nothing_pending(live.log, "g")


async def test_unacked_events_come_again_to_the_next_subscriber(live: Live) -> None:
    await live.add(2)
    async with Subscriber(live.target, "g") as sub:
        await take(sub, 2)  # taken, never acked
    async with Subscriber(live.target, "g") as sub:
        again = await take(sub, 2)
    assert [d.attempt for d in again] == [2, 2]


async def test_nack_with_delay_redelivers_later(live: Live) -> None:
    await live.add(1)
    async with Subscriber(live.target, "g") as sub:
        (first,) = await take(sub, 1)
        await sub.nack(first, delay=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        (second,) = await take(sub, 1)
        assert loop.time() - t0 >= 0.25
        assert second.event.id == first.event.id
        assert second.attempt == 2
        await sub.ack(second)


async def test_filter_and_start_latest(live: Live) -> None:
    await live.add(2)
    flt = event_pb2.EventFilter(event_types=[event_pb2.EVENT_TYPE_STATUS])
    async with Subscriber(live.target, "statuses", filter=flt, start="latest") as sub:
        reader = asyncio.ensure_future(take(sub, 1))
        await until(lambda: group_exists(live.log, "statuses"))  # at the head, before new events
        await live.add(1, "text")
        (status_seq,) = await live.add(1, "status-delivered")
        (d,) = await reader
    assert d.event.sequence == status_seq
    assert d.event.WhichOneof("payload") == "status"


async def test_reconnects_after_the_server_goes_away(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    port = free_port()
    rpc = await create_server(log, "127.0.0.1", port, heartbeat_interval=0.2)
    target = f"127.0.0.1:{port}"
    sub = Subscriber(target, "g", backoff_initial=0.05, backoff_max=0.2)
    try:
        first = (await log.append(normalize(samples.body("text"), 1.0))).sequences
        got = await take(sub, 1)
        await sub.ack(got[0])
        await until(lambda: nothing_pending(log, "g"))  # the ack landed
        await rpc.shutdown(0.2)  # the stream ends with UNAVAILABLE; the subscriber retries
        await until(lambda: sub.reconnects >= 1)  # it noticed, and is retrying
        rpc = await create_server(log, "127.0.0.1", port, heartbeat_interval=0.2)
        later = (await log.append(normalize(samples.body("text"), 1.0))).sequences
        got += await take(sub, 1)
        await sub.ack(got[-1])
        assert [d.event.sequence for d in got] == first + later
        assert sub.reconnects >= 1
    finally:
        await sub.stop()
        await rpc.shutdown(0.2)
        await log.close()
    check = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    info = await check.group_info("g")
    await check.close()
    assert info is not None
    assert info.pending_count == 0


async def test_invalid_group_is_raised_not_retried(live: Live) -> None:
    sub = Subscriber(live.target, "not a valid group!", backoff_initial=0.01)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await take(sub, 1)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sub.reconnects == 0
    finally:
        await sub.stop()


async def test_no_server_keeps_retrying_until_stopped() -> None:
    sub = Subscriber(f"127.0.0.1:{free_port()}", "g", backoff_initial=0.01, backoff_max=0.05)
    reader = asyncio.ensure_future(take(sub, 1, timeout=30))
    await until(lambda: sub.reconnects >= 2)
    await sub.stop()
    assert await asyncio.wait_for(reader, 5) == []


async def test_connected_says_whether_a_stream_ever_opened(live: Live) -> None:
    async with Subscriber(live.target, "g") as sub:
        # No event needed: the server sends its headers once the group exists.
        await until(lambda: sub.connected)
    nowhere = Subscriber(f"127.0.0.1:{free_port()}", "g", backoff_initial=0.01, backoff_max=0.05)
    nowhere.start()
    await until(lambda: nowhere.reconnects >= 2)
    assert nowhere.connected is False
    await nowhere.stop()
    refused = Subscriber(live.target, "not a valid group!")
    with pytest.raises(grpc.aio.AioRpcError):
        await take(refused, 1)
    assert refused.connected is False
    await refused.stop()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    sub = Subscriber("x:1", "g", backoff_initial=0.1, backoff_max=1.0)
    for failures, full in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (50, 1.0)]:
        delays = [sub._backoff(failures) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), failures
        assert len(set(delays)) > 1  # jittered


def test_start_position_words() -> None:
    assert start_position(None).earliest
    assert start_position("earliest").earliest
    assert start_position("latest").latest
    assert start_position("after:41").after_sequence == 41
    assert start_position("time:2026-01-31T09:00:00Z").from_time.seconds == 1_769_850_000
    assert start_position("time:2026-01-31T10:00+01:00").from_time.seconds == 1_769_850_000
    with pytest.raises(ValueError, match="no time zone"):
        start_position("time:2026-01-31T09:00")
    with pytest.raises(ValueError, match="earliest, latest, after:SEQ or time:ISO-8601"):
        start_position("yesterday")


async def test_stop_inside_the_loop_ends_it_and_unhanded_events_come_again(live: Live) -> None:
    seqs = await live.add(5)
    handled: list[int] = []
    sub = Subscriber(live.target, "g")
    async for d in sub:
        if not handled:
            # The other four came in the same response (stored before the stream opened):
            # they are in the buffer the loop is reading.
            assert len(sub._current) - sub._taken == 4
        handled.append(d.event.sequence)
        await sub.ack(d)
        await sub.stop()  # one is enough: the loop must end here
    assert handled == seqs[:1]
    async with Subscriber(live.target, "g") as again:
        rest = await take(again, 4)
    assert [d.event.sequence for d in rest] == seqs[1:]


async def test_a_silent_stream_is_abandoned_and_reopened(tmp_path: Path) -> None:
    # A server that stops heartbeating (a dead peer TCP has not noticed) is left behind.
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    rpc = await create_server(log, "127.0.0.1", free_port(), heartbeat_interval=60)
    port = rpc.port
    sub = Subscriber(f"127.0.0.1:{port}", "g", stall_timeout=0.3, backoff_initial=0.01)
    try:
        sub.start()
        await until(lambda: sub.reconnects >= 2)  # silent for stall_timeout, twice
        (seq,) = (await log.append(normalize(samples.body("text"), 1.0))).sequences
        (d,) = await take(sub, 1)
        assert d.event.sequence == seq
    finally:
        await sub.stop()
        await rpc.shutdown(0.2)
        await log.close()


async def test_batches_hand_out_what_arrived_and_ack_all_acks_it(live: Live) -> None:
    seqs = await live.add(40)
    async with Subscriber(live.target, "g", max_batch_size=16, max_in_flight=100) as sub:
        first = await take(sub, 3)  # one at a time first: a batch then gives the rest
        got = [d.event.sequence for d in first]
        async with asyncio.timeout(10):
            async for batch in sub.batches():
                assert batch
                assert len(batch) <= 16
                got += [d.event.sequence for d in batch]
                if len(got) >= len(seqs):
                    break
        assert got == seqs
        await sub.ack_all(first)
        await sub.ack_all([])
    info = await live.log.group_info("g")
    assert info is not None
    assert info.pending_count == len(seqs) - 3  # only the three acked are gone


async def test_batches_end_when_the_subscriber_stops(live: Live) -> None:
    await live.add(2)
    sub = Subscriber(live.target, "g")
    seen: list[int] = []
    async with asyncio.timeout(10):
        async for batch in sub.batches():
            seen += [d.event.sequence for d in batch]
            if len(seen) >= 2:
                await sub.stop()
    assert len(seen) == 2
    assert [b async for b in sub.batches()] == []
