"""Subscribe over a real grpc.aio server and channel, with a real SQLite log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_rpc_support import Rpc, Subscriber, message, record_fetches, running
from wahook.errors import LogUnavailableError
from wahook.v1 import event_pb2, service_pb2


@pytest.fixture
async def rpc(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running(tmp_path) as r:
        yield r


def seqs(deliveries: list[service_pb2.Delivery]) -> list[int]:
    return [d.event.sequence for d in deliveries]


async def test_subscribe_receives_events_and_acks(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(3)])).sequences
    sub = rpc.subscribe(consumer_group="billing", consumer_name="worker-1")
    got = await sub.take(3)
    assert seqs(got) == stored
    assert [d.attempt for d in got] == [1, 1, 1]
    assert [d.event.id for d in got] == [message(i).id for i in range(3)]
    assert got[0].event.message.type_name == "text"
    assert got[0].ack_deadline.seconds > time.time() + 25
    assert sub.responses[0].head_sequence == stored[-1]
    assert await rpc.pending("billing") == 3
    sub.ack(stored)
    await rpc.wait_pending("billing", 0)
    group = await rpc.stub.GetConsumerGroup(
        service_pb2.GetConsumerGroupRequest(consumer_group="billing")
    )
    assert group.group.connected_subscribers == 1
    assert group.group.delivered_sequence == stored[-1]
    stats = rpc.handle.delivery_stats()
    assert (stats.delivered, stats.acked, stats.streams_opened) == (3, 3, 1)
    await sub.cancel()


async def test_heartbeats_flow_while_idle(rpc: Rpc) -> None:
    sub = rpc.subscribe(consumer_group="live", start=service_pb2.StartPosition(latest=True))
    assert await sub.nothing_for(0.5)
    assert sub.heartbeats, "no heartbeat while idle"
    assert sub.heartbeats[-1].server_time.seconds > 0
    await sub.cancel()


async def test_an_append_wakes_a_sleeping_stream(tmp_path: Path) -> None:
    async with running(tmp_path, heartbeat_interval=600.0) as rpc:
        sub = rpc.subscribe(consumer_group="live", start=service_pb2.StartPosition(latest=True))
        async with asyncio.timeout(10):
            while await rpc.log.group_info("live") is None:  # noqa: ASYNC110 - polls the log
                await asyncio.sleep(0.01)
        stored = (await rpc.log.append([message(1)])).sequences
        # The next heartbeat (and its fetch) is 10 minutes away: this is the append's wake.
        got = await sub.take(1, within=60.0)
        assert seqs(got) == stored
        assert sub.heartbeats == []
        await sub.cancel()


async def test_catch_up_comes_in_batches(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(100)])).sequences
    sub = rpc.subscribe(consumer_group="batched", max_batch_size=16)
    got = await sub.take(100)
    assert seqs(got) == stored
    sizes = [len(r.deliveries) for r in sub.responses]
    assert max(sizes) == 16
    assert len(sizes) <= 8
    await sub.cancel()


async def test_max_in_flight_holds_back_until_acked(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(12)])).sequences
    sub = rpc.subscribe(consumer_group="slow", max_in_flight=5)
    first = await sub.take(5)
    assert seqs(first) == stored[:5]
    assert await sub.nothing_for(0.4)
    sub.ack(seqs(first)[:3])
    more = await sub.take(3)
    assert seqs(more) == stored[5:8]
    await sub.cancel()


async def test_unacked_event_is_redelivered_after_its_deadline(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(1), message(2)])).sequences
    sub = rpc.subscribe(consumer_group="deadline", ack_deadline={"seconds": 1})
    first = await sub.take(2)
    sub.ack([stored[1]])
    again = await sub.take(1, within=30.0)
    # Sent once the deadline had passed, by the server's clock (that of ack_deadline).
    sent = sub.responses[-1].server_time.ToNanoseconds()
    assert sent >= first[0].ack_deadline.ToNanoseconds()
    assert [(d.event.sequence, d.attempt) for d in again] == [(stored[0], 2)]
    assert first[0].attempt == 1
    await sub.cancel()


async def test_cancelled_stream_hands_its_events_to_the_next_subscriber(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(4)])).sequences
    first = rpc.subscribe(consumer_group="crashy")
    assert seqs(await first.take(4)) == stored
    first.ack([stored[0]])
    await rpc.wait_pending("crashy", 3)
    await first.cancel()  # dies without acking the rest; the deadline is 30 s away
    second = rpc.subscribe(consumer_group="crashy")
    again = await second.take(3, within=20.0)  # well before the 30 s deadline
    assert [(d.event.sequence, d.attempt) for d in again] == [(q, 2) for q in stored[1:]]
    await second.cancel()


async def test_two_groups_each_get_everything(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(10)])).sequences
    a, b = rpc.subscribe(consumer_group="a"), rpc.subscribe(consumer_group="b")
    assert seqs(await a.take(10)) == stored
    assert seqs(await b.take(10)) == stored
    await a.cancel()
    await b.cancel()


async def test_two_subscribers_in_one_group_split_without_loss(rpc: Rpc) -> None:
    subs = [rpc.subscribe(consumer_group="shared", max_in_flight=8) for _ in range(2)]
    async with asyncio.timeout(10):  # both joined before the events arrive
        while rpc.handle.connected_subscribers() < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    stored = (await rpc.log.append([message(i) for i in range(200)])).sequences
    seen: list[list[int]] = [[], []]

    async def work(i: int) -> None:
        while sum(map(len, seen)) < 200:
            try:
                batch = await subs[i].batch(0.3)
            except TimeoutError:
                continue
            seen[i].extend(seqs(batch))
            subs[i].ack(seqs(batch))

    await asyncio.wait_for(asyncio.gather(work(0), work(1)), 10)
    assert sorted(seen[0] + seen[1]) == stored
    assert seen[0]
    assert seen[1]
    await rpc.wait_pending("shared", 0)
    for sub in subs:
        await sub.cancel()


async def test_nack_with_delay_redelivers_later(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(1)])).sequences
    sub = rpc.subscribe(consumer_group="nacky")
    await sub.take(1)
    started = time.monotonic()
    sub.nack(stored[0], delay=0.5)
    again = await sub.take(1)
    assert time.monotonic() - started >= 0.45
    assert [(d.event.sequence, d.attempt) for d in again] == [(stored[0], 2)]
    sub.nack(stored[0])
    third = await sub.take(1)
    assert third[0].attempt == 3
    stats = rpc.handle.delivery_stats()
    assert (stats.delivered, stats.redelivered, stats.nacked) == (3, 2, 2)
    await sub.cancel()


async def test_filters_and_start_positions(rpc: Rpc) -> None:
    old = (await rpc.log.append([message(1), message(2, type_name="image")])).sequences
    images = rpc.subscribe(
        consumer_group="images",
        filter=event_pb2.EventFilter(message_types=["image"]),
    )
    assert seqs(await images.take(1)) == [old[1]]
    after = rpc.subscribe(
        consumer_group="after", start=service_pb2.StartPosition(after_sequence=old[0])
    )
    assert seqs(await after.take(1)) == [old[1]]
    await images.cancel()
    await after.cancel()


BAD_OPTIONS = [
    ({}, "options.consumer_group"),
    ({"consumer_group": "x" * 129}, "options.consumer_group"),
    ({"consumer_group": "has space"}, "options.consumer_group"),
    ({"consumer_group": "g", "consumer_name": "x" * 200}, "options.consumer_name"),
    ({"consumer_group": "g", "max_in_flight": 100_001}, "options.max_in_flight"),
    ({"consumer_group": "g", "max_batch_size": 4097}, "options.max_batch_size"),
    ({"consumer_group": "g", "ack_deadline": {"nanos": 500_000_000}}, "options.ack_deadline"),
    ({"consumer_group": "g", "ack_deadline": {"seconds": 3601}}, "options.ack_deadline"),
    ({"consumer_group": "g", "filter": {"event_types": [1, 99]}}, "options.filter.event_types[1]"),
]


@pytest.mark.parametrize(("options", "field"), BAD_OPTIONS)
async def test_bad_first_request_names_the_field(rpc: Rpc, options: dict, field: str) -> None:  # type: ignore[type-arg]
    sub = rpc.subscribe(**options)
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert await rpc.log.group_info("g") is None


async def test_first_request_without_options_is_invalid(rpc: Rpc) -> None:
    sub = Subscriber(rpc.stub, None)
    sub.ack([1])
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "options" in (error.details() or "")

    empty = Subscriber(rpc.stub, None)
    empty.half_close()
    error = await empty.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_options_in_a_later_request_are_invalid(rpc: Rpc) -> None:
    sub = rpc.subscribe(consumer_group="twice")
    sub.send(service_pb2.SubscribeRequest(options={"consumer_group": "twice"}))
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only the first request" in (error.details() or "")


async def test_filter_conflict_is_failed_precondition(rpc: Rpc) -> None:
    first = rpc.subscribe(consumer_group="f", filter={"event_types": [1]})
    assert await first.nothing_for(0.2)
    other = rpc.subscribe(consumer_group="f", filter={"event_types": [2]})
    error = await other.error()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    joined = rpc.subscribe(consumer_group="f")  # an empty filter always joins
    assert await joined.nothing_for(0.2)
    await first.cancel()
    await joined.cancel()


async def test_shutdown_ends_streams_releases_events_and_goes_not_serving(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as rpc:
        health = health_pb2_grpc.HealthStub(rpc.channel)
        check = await health.Check(health_pb2.HealthCheckRequest(service="wahook.v1.EventService"))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stored = (await rpc.log.append([message(1), message(2)])).sequences
        sub = rpc.subscribe(consumer_group="draining")
        await sub.take(2)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        await rpc.handle.shutdown(1.0)

        error = await sub.error()
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert rpc.handle.connected_subscribers() == 0
        # Released at shutdown: the next consumer gets them at once, not in 30 s.
        again = (
            await rpc.log.fetch("draining", "after-restart", 10, 30.0, time.time())
        ).deliveries()
        assert [(d.event.sequence, d.attempt) for d in again] == [(q, 2) for q in stored]


async def test_acks_one_per_request_and_just_before_hanging_up_all_land(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(50)])).sequences
    sub = rpc.subscribe(consumer_group="chatty")
    got = await sub.take(50)
    for d in got[:49]:
        sub.ack([d.event.sequence])
    await rpc.wait_pending("chatty", 1)
    sub.ack([got[49].event.sequence])
    sub.half_close()  # the stream ends right behind the last ack
    async with asyncio.timeout(5):
        while rpc.handle.connected_subscribers():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await rpc.wait_pending("chatty", 0)
    info = await rpc.log.group_info("chatty")
    assert info is not None
    assert info.delivered_sequence == stored[-1]
    await sub.cancel()


async def test_acks_of_unknown_sequences_do_not_spin_a_full_window(
    rpc: Rpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rpc.log.append([message(i) for i in range(3)])
    sub = rpc.subscribe(consumer_group="full", max_in_flight=2)
    await sub.take(2)
    calls = 0
    real = rpc.log.head_sequence

    async def counted() -> int:
        nonlocal calls
        calls += 1
        return await real()

    monkeypatch.setattr(rpc.log, "head_sequence", counted)
    for n in range(20):
        sub.ack([10_000 + n])
    assert await sub.nothing_for(0.3)
    # A few loop turns per ack and heartbeat; a spinning loop would make thousands.
    assert calls <= 60, calls
    await sub.cancel()


async def test_negative_nack_delay_is_invalid(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(1)])).sequences
    sub = rpc.subscribe(consumer_group="neg")
    await sub.take(1)
    sub.send(
        service_pb2.SubscribeRequest(nacks=[{"sequence": stored[0], "delay": {"seconds": -1}}])
    )
    error = await sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nacks[0].delay" in (error.details() or "")
    # The stream ended: its event is handed back at once.
    again = (await rpc.log.fetch("neg", "other", 10, 30.0, time.time())).deliveries()
    assert [(d.event.sequence, d.attempt) for d in again] == [(stored[0], 2)]


async def test_append_driven_fetches_are_spaced_by_the_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, fetch_linger=0.02) as rpc:
        sub = rpc.subscribe(consumer_group="busy")
        assert await sub.nothing_for(0.1)
        calls = record_fetches(rpc, monkeypatch)
        started = time.monotonic()
        for i in range(150):
            await rpc.log.append([message(i)])  # one commit each
        got = await sub.take(150)
        elapsed = time.monotonic() - started
        assert sorted(d.event.sequence for d in got) == list(range(1, 151))
        # One fetch per commit would be ~150; spaced by 20 ms they are a handful.
        assert len(calls) <= elapsed / 0.02 + 5, (len(calls), elapsed)
        await sub.cancel()


async def test_a_stream_cancelled_mid_catch_up_loses_nothing(rpc: Rpc) -> None:
    stored = (await rpc.log.append([message(i) for i in range(5000)])).sequences
    first = rpc.subscribe(consumer_group="midway", max_batch_size=64, max_in_flight=100_000)
    await first.take(64)  # more is being fetched ahead while we read
    await first.cancel()
    second = rpc.subscribe(consumer_group="midway", max_batch_size=1024, max_in_flight=100_000)
    got = await second.take(5000, within=10.0)  # the ack deadline is 30 s: no waiting
    assert sorted(d.event.sequence for d in got) == stored
    assert {d.attempt for d in got} <= {1, 2}
    await second.cancel()


async def test_acks_with_room_in_the_window_cause_no_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live stream fetches on appends (spaced by the linger), not once per ack round
    trip: an ack only wakes the delivery loop when the window is full."""
    async with running(tmp_path, heartbeat_interval=30.0) as rpc:
        stored = (await rpc.log.append([message(i) for i in range(3)])).sequences
        sub = rpc.subscribe(consumer_group="quiet", max_in_flight=10)
        await sub.take(3)
        calls = record_fetches(rpc, monkeypatch)
        for seq in stored:
            sub.ack([seq])
        await rpc.wait_pending("quiet", 0)
        assert await sub.nothing_for(0.2)
        assert calls == []
        # A full window still wakes on the ack that frees room.
        more = (await rpc.log.append([message(i) for i in range(10, 22)])).sequences
        got = await sub.take(10)
        assert seqs(got) == more[:10]
        assert await sub.nothing_for(0.1)
        sub.ack(seqs(got))
        assert seqs(await sub.take(2)) == more[10:]
        await sub.cancel()


async def test_a_passing_ack_deadline_wakes_a_stream_only_for_unacked_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, heartbeat_interval=30.0) as rpc:
        stored = (await rpc.log.append([message(1), message(2)])).sequences
        acking = rpc.subscribe(consumer_group="acks", ack_deadline={"seconds": 1})
        holding = rpc.subscribe(consumer_group="holds", ack_deadline={"seconds": 1})
        await acking.take(2)
        await holding.take(2)
        acking.ack(stored)
        await rpc.wait_pending("acks", 0)
        calls = record_fetches(rpc, monkeypatch)
        again = await holding.take(2, within=20.0)  # due after 1 s, no heartbeat before 30 s
        assert [(d.event.sequence, d.attempt) for d in again] == [(q, 2) for q in stored]
        await asyncio.sleep(0.3)
        assert "acks" not in calls  # all acked by its deadline: no wake-up, no fetch
        await acking.cancel()
        await holding.cancel()


async def test_sleeping_streams_share_one_append_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams waiting for appends are woken by one watch on the log, not one each: per
    commit one wait_for_append returns, whatever the number of streams."""
    async with running(tmp_path, heartbeat_interval=30.0) as rpc:
        subs = [rpc.subscribe(consumer_group=f"g{i}") for i in range(4)]
        first = (await rpc.log.append([message(0)])).sequences
        for sub in subs:
            assert seqs(await sub.take(1)) == first
        calls = 0
        real = rpc.log.wait_for_append

        async def counted(after: int, timeout: float) -> bool:  # noqa: ASYNC109 - the protocol's
            nonlocal calls
            calls += 1
            return await real(after, timeout)

        monkeypatch.setattr(rpc.log, "wait_for_append", counted)
        stored: list[int] = []
        for i in range(1, 11):
            stored += (await rpc.log.append([message(i)])).sequences  # one commit each
            for sub in subs:
                assert seqs(await sub.take(1)) == stored[-1:]
        # One watch call per commit (a few more when a commit lands mid-cycle); one per
        # stream and commit would be 40.
        assert calls <= 20, calls
        for sub in subs:
            await sub.cancel()


async def test_a_failing_ack_ends_the_stream_and_its_events_go_back(
    rpc: Rpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = (await rpc.log.append([message(1), message(2)])).sequences
    sub = rpc.subscribe(consumer_group="ackfail")
    await sub.take(2)

    failed = asyncio.Event()

    async def unavailable(group: str, leases: list[tuple[int, int]]) -> list[int]:
        failed.set()
        raise LogUnavailableError("event log unavailable: disk I/O error")

    monkeypatch.setattr(rpc.log, "ack_leases", unavailable)
    sub.ack(stored[:1])
    await asyncio.wait_for(failed.wait(), 10)
    sub.ack(stored[1:])  # the next request sees the failed commit
    error = await sub.error()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    monkeypatch.undo()
    # Nothing was acked; the stream's release hands both back at once.
    again = (await rpc.log.fetch("ackfail", "other", 10, 30.0, time.time())).deliveries()
    assert [(d.event.sequence, d.attempt) for d in again] == [(q, 2) for q in stored]


async def test_a_log_closing_under_a_sleeping_stream_ends_it(tmp_path: Path) -> None:
    async with running(tmp_path, heartbeat_interval=30.0) as rpc:
        sub = rpc.subscribe(consumer_group="closing")
        assert await sub.nothing_for(0.2)  # asleep, waiting for an append
        await rpc.log.close()
        error = await sub.error()
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_saturated_stream_paces_its_fetches_and_a_quiet_spell_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetch cycles that take over 10 ms (here: a slow fetch) space append-driven fetches
    by a multiple of the cycle (bigger batches, far fewer cycles); an append after a quiet
    spell is still fetched at once."""
    async with running(tmp_path, heartbeat_interval=30.0) as rpc:
        sub = rpc.subscribe(consumer_group="paced")
        assert await sub.nothing_for(0.1)
        calls = record_fetches(rpc, monkeypatch, delay=0.03)
        stored: list[int] = []
        started = time.monotonic()
        for i in range(200):
            stored += (await rpc.log.append([message(i)])).sequences
            await asyncio.sleep(0.005)
        got = await sub.take(200, within=20.0)
        elapsed = time.monotonic() - started
        assert sorted(seqs(got)) == stored
        # Unpaced, a fetch per ~35 ms cycle (more on a slower machine: at least 200 x 5 ms);
        # paced by 6x the cycle's moving average, over 0.1 s apart once it has risen.
        assert len(calls) <= elapsed / 0.1 + 5, (len(calls), elapsed)
        await asyncio.sleep(0.4)  # a quiet spell longer than any pace (at most 0.25 s)
        more = (await rpc.log.append([message(999)])).sequences
        # Fetched on the append's wake: the heartbeat is 30 s away.
        assert seqs(await sub.take(1, within=20.0)) == more
        await sub.cancel()
