"""The runtime in the test's own loop: listening line, HTTP + gRPC on one loop, retention,
and the drain order (not ready, in-flight POSTs finish durable, streams end, log closes)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import grpc
import pytest
import tornado.httpclient
from test_rpc_support import Subscriber
from wahook import config as cfg
from wahook import runtime, samples
from wahook.core.normalize import normalize
from wahook.errors import ConfigError, LogUnavailableError
from wahook.rpc.subscribe import DeliveryStats
from wahook.store.base import EventFilter
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import service_pb2, service_pb2_grpc
from wahook_testkit import APP_SECRET, LISTENING, sign


def make_config(tmp_path: Path, **env: str) -> cfg.Config:
    base = {
        "WAHOOK_APP_SECRET": APP_SECRET,
        "WAHOOK_INSECURE_HTTP": "1",
        "WAHOOK_HTTP_HOST": "127.0.0.1",
        "WAHOOK_HTTP_PORT": "0",
        "WAHOOK_GRPC_PORT": "0",
        "WAHOOK_DATA_DIR": str(tmp_path / "data"),
    }
    return cfg.load({}, base | env)


async def started(out: io.StringIO) -> tuple[str, str]:
    for _ in range(6000):  # 60 s: a bound for a hang, not a measure of start-up
        m = LISTENING.search(out.getvalue())
        if m:
            return m.group(1), m.group(2)
        await asyncio.sleep(0.01)
    raise AssertionError("no listening line")


async def test_serve_answers_http_and_grpc_then_stops_with_0(tmp_path: Path) -> None:
    stop, out = asyncio.Event(), io.StringIO()
    task = asyncio.create_task(runtime.serve(make_config(tmp_path), stop=stop, out=out))
    http_url, grpc_target = await started(out)
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        body = samples.body("text")
        r = await client.fetch(
            http_url + "/webhook",
            method="POST",
            body=body,
            headers={"X-Hub-Signature-256": sign(body)},
        )
        assert r.code == 200
        r = await client.fetch(http_url + "/readyz")
        assert r.code == 200
        async with grpc.aio.insecure_channel(grpc_target) as ch:
            stub = service_pb2_grpc.EventServiceStub(ch)
            page = await stub.ListEvents(service_pb2.ListEventsRequest())
        assert len(page.events) == 1
    finally:
        client.close()
        stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    # The log was closed cleanly and holds the event.
    log = await SqliteEventLog.open(tmp_path / "data" / "events.sqlite3")
    assert len(await log.list_events(EventFilter(), 0, 0, 10)) == 1
    await log.close()


async def test_drain_waits_for_in_flight_posts_and_refuses_new_ones(tmp_path: Path) -> None:
    sidecar = runtime.Sidecar(make_config(tmp_path))
    listening = await sidecar.start()
    real_append = sidecar.event_log.append
    gate = asyncio.Event()

    async def later(events):  # type: ignore[no-untyped-def]
        await gate.wait()  # an append that takes a while, in flight when the drain starts
        return await real_append(events)

    def slow_append(events):  # type: ignore[no-untyped-def]
        return asyncio.ensure_future(later(events))

    sidecar.deps.event_log.append = slow_append  # type: ignore[method-assign]
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    body = samples.body("text")
    headers = {"X-Hub-Signature-256": sign(body)}
    url = listening.http_url + "/webhook"
    in_flight = asyncio.ensure_future(client.fetch(url, method="POST", body=body, headers=headers))
    while sidecar.deps.drain.in_flight == 0:  # noqa: ASYNC110 (a counter, no event to await)
        await asyncio.sleep(0.005)
    drain = asyncio.ensure_future(sidecar.drain())
    await asyncio.sleep(0.1)
    assert not drain.done(), "the drain did not wait for the in-flight POST"
    with pytest.raises(LogUnavailableError, match="shutting down"):
        await sidecar.deps.ready()  # what /readyz answers with, now 503
    with pytest.raises(ConnectionRefusedError):  # the listener no longer accepts
        await client.fetch(listening.http_url + "/healthz")
    gate.set()
    answer = await in_flight
    assert answer.code == 200
    await asyncio.wait_for(drain, 30)
    client.close()
    log = await SqliteEventLog.open(tmp_path / "data" / "events.sqlite3")
    assert len(await log.list_events(EventFilter(), 0, 0, 10)) == 1
    await log.close()


def metric_values(text: str) -> dict[str, float]:
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


async def test_metrics_export_every_delivery_counter(tmp_path: Path) -> None:
    assert {f for _, f, _ in runtime.DELIVERY_COUNTERS} == set(DeliveryStats.__dataclass_fields__)
    sidecar = runtime.Sidecar(make_config(tmp_path))
    listening = await sidecar.start()
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        async with grpc.aio.insecure_channel(listening.grpc_target) as channel:
            stub = service_pb2_grpc.EventServiceStub(channel)
            sub = Subscriber(stub, service_pb2.SubscribeOptions(consumer_group="metrics"))
            # The group first: an event no group holds may be pruned at once (the sample's
            # timestamp is older than the retention).
            async with asyncio.timeout(30):  # a bound for a hang
                while await sidecar.event_log.group_info("metrics") is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            appended = await sidecar.event_log.append(normalize(samples.body("text"), time.time()))
            [sequence] = appended.sequences
            assert [d.attempt for d in await sub.take(1)] == [1]
            sub.nack(sequence)
            assert [d.attempt for d in await sub.take(1)] == [2]
            sub.ack([sequence])
            async with asyncio.timeout(30):  # a bound for a hang: the ack is read, then counted
                while sidecar.rpc.delivery_stats().acked == 0:  # noqa: ASYNC110 (a counter)
                    await asyncio.sleep(0.01)
            await sub.cancel()
        page = await client.fetch(listening.http_url + "/metrics")
        values = metric_values(page.body.decode())
        expected = {"delivered": 2, "redelivered": 1, "acked": 1, "nacked": 1}
        expected |= {"streams_opened": 1, "dead_lettered": 0}
        for name, field, _ in runtime.DELIVERY_COUNTERS:
            assert f"# TYPE {name} counter" in page.body.decode()
            assert values[name] == expected[field], name
    finally:
        client.close()
        await sidecar.drain()


async def test_retention_prunes_old_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RETENTION_INTERVAL", 0.05)
    sidecar = runtime.Sidecar(make_config(tmp_path, WAHOOK_RETENTION="1h"))
    await sidecar.start()
    try:
        old = normalize(samples.body("text"), time.time() - 7200)
        new = normalize(samples.body("text"), time.time())
        await sidecar.event_log.append([*old, *new])
        for _ in range(3000):
            left = await sidecar.event_log.list_events(EventFilter(), 0, 0, 10)
            if len(left) == 1:
                break
            await asyncio.sleep(0.02)
        assert [e.id for e in left] == [new[0].id]
    finally:
        await sidecar.drain()


async def test_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    sidecar = runtime.Sidecar(make_config(tmp_path))
    listening = await sidecar.start()
    port = listening.http_url.rsplit(":", 1)[1]
    try:
        other = runtime.Sidecar(make_config(tmp_path / "b", WAHOOK_HTTP_PORT=port))
        with pytest.raises(ConfigError, match="cannot listen on"):
            await other.start()
        grpc_port = listening.grpc_target.rsplit(":", 1)[1]
        third = runtime.Sidecar(make_config(tmp_path / "c", WAHOOK_GRPC_PORT=grpc_port))
        with pytest.raises(ConfigError, match="cannot listen for gRPC"):
            await third.start()
    finally:
        await sidecar.drain()
