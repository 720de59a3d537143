"""End to end: signed HTTPS POSTs to a real `wahook serve` reach gRPC subscribers, once,
per consumer group, and come again to the group when a subscriber dies without acking."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_helpers import (
    collect,
    comparable,
    fixture_files,
    group_info,
    list_events,
    post,
    wahook_normalize,
)
from wahook import samples
from wahook.client import Subscriber
from wahook_testkit import Certs, WahookFactory

pytestmark = pytest.mark.e2e


async def test_every_fixture_reaches_a_subscriber_as_normalize_gives(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    files = fixture_files()
    assert files, "tests/data has no payload fixtures"
    server = wahook_factory.start(tmp_path / "data")
    ctx = certs.client_context()
    expected: dict[str, dict[str, object]] = {}
    for path in files:
        status, answer = post(server.webhook_url, path.read_bytes(), ctx)
        assert status == 200, (path.name, answer)
        for event in wahook_normalize(path):
            # Two fixtures may carry the same update: the log keeps the first copy.
            expected.setdefault(event.id, comparable(event))
    got = await collect(server.grpc_target, "fixtures", len(expected), quiet=0.5)
    received = {d.event.id: comparable(d.event) for d in got}
    assert len(got) == len(received), "an event was delivered twice"
    assert set(received) == set(expected)
    for event_id, want in expected.items():
        assert received[event_id] == want, event_id
    assert all(d.attempt == 1 for d in got)
    sequences = [d.event.sequence for d in got]
    assert sequences == sorted(sequences)
    info = await group_info(server.grpc_target, "fixtures")
    assert info is not None
    assert info.pending_count == 0


async def test_same_post_five_times_and_concurrently_yields_events_once(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "data")
    ctx = certs.client_context()
    sequential, concurrent = samples.body("text"), samples.body("status-read")
    answers = [post(server.webhook_url, sequential, ctx) for _ in range(5)]
    with ThreadPoolExecutor(5) as pool:
        answers += list(pool.map(lambda _: post(server.webhook_url, concurrent, ctx), range(5)))
    assert [s for s, _ in answers] == [200] * 10
    events = await list_events(server.grpc_target)
    assert len(events) == 2
    got = await collect(server.grpc_target, "once", 2, quiet=0.5)
    # Sequences need not be dense (a refused duplicate may use one up): compare to the log.
    assert sorted(d.event.sequence for d in got) == [e.sequence for e in events]


SUBSCRIBER_THAT_DIES = textwrap.dedent(
    """
    import asyncio, sys
    import grpc
    from wahook.v1 import service_pb2, service_pb2_grpc

    async def main():
        ch = grpc.aio.insecure_channel(sys.argv[1])
        stub = service_pb2_grpc.EventServiceStub(ch)
        opts = service_pb2.SubscribeOptions(consumer_group="workers")
        call = stub.Subscribe(iter([service_pb2.SubscribeRequest(options=opts)]))
        seen = 0
        async for resp in call:
            seen += len(resp.deliveries)
            if seen >= int(sys.argv[2]):
                print("took", seen, flush=True)
                await asyncio.sleep(3600)  # holds them, never acks, until killed

    asyncio.run(main())
    """
)


async def test_subscriber_killed_without_acking_its_events_come_again(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "data")
    ctx = certs.client_context()
    for _ in range(6):
        assert post(server.webhook_url, samples.body("text"), ctx)[0] == 200
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once; its pipe is read in a thread)
        [sys.executable, "-c", SUBSCRIBER_THAT_DIES, server.grpc_target, "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
        assert line.strip() == "took 6"
        info = await group_info(server.grpc_target, "workers")
        assert info is not None
        assert info.pending_count == 6
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    # The next member of the group gets all six, as second attempts, long before the
    # 30 s ack deadline: the dead stream released them.
    got = await collect(server.grpc_target, "workers", 6, timeout=15, quiet=0.3)
    stored = [e.sequence for e in await list_events(server.grpc_target)]
    assert len(stored) == 6
    assert sorted(d.event.sequence for d in got) == stored
    assert {d.attempt for d in got} == {2}
    info = await group_info(server.grpc_target, "workers")
    assert info is not None
    assert info.pending_count == 0


async def test_groups_each_get_everything_and_members_of_one_group_split(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "data")
    ctx = certs.client_context()
    kinds = list(samples.KINDS) * 2
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda k: post(server.webhook_url, samples.body(k), ctx), kinds))
    assert all(status == 200 for status, _ in answers)
    target = server.grpc_target
    stored = [e.sequence for e in await list_events(target)]
    total = len(stored)
    assert total == len(kinds)

    group_a, group_b = await asyncio.gather(
        collect(target, "audit", total, quiet=0.3), collect(target, "billing", total, quiet=0.3)
    )
    assert sorted(d.event.sequence for d in group_a) == stored
    assert sorted(d.event.sequence for d in group_b) == stored

    # Two members of one group, each allowed a few in flight, share the stream.
    got: list[list[int]] = [[], []]
    enough = asyncio.Event()

    async def member(i: int) -> None:
        async with Subscriber(target, "split", max_in_flight=4) as sub:
            while not enough.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        async for d in sub:
                            got[i].append(d.event.sequence)
                            await sub.ack(d)
                            if len(got[0]) + len(got[1]) >= total:
                                enough.set()

    await asyncio.wait_for(asyncio.gather(member(0), member(1)), 20)
    assert got[0]
    assert got[1]
    assert not set(got[0]) & set(got[1]), "one event went to both members"
    assert sorted(got[0] + got[1]) == stored
