"""End to end: `wahook serve --workers 2`, two front processes on one port over one log.

Every test runs real processes: the parent (event log, gRPC) and its two fronts, found
through /proc (the parent's children) and through /metrics (each front shows its own pid
and HTTP counters; a scrape on a fresh connection lands on whichever front the kernel
picks).
"""

from __future__ import annotations

import os
import re
import signal
import ssl
from pathlib import Path

import pytest
from e2e_helpers import collect, list_events, post, wait_until
from redis_server import start_redis
from test_e2e_crash import Load, _check_after_restart, _pre_acked, event_ids, wait_for
from wahook import samples
from wahook_testkit import Certs, WahookFactory, WahookProcess, free_port

pytestmark = pytest.mark.e2e

WORKERS = ["--workers", "2"]
WAIT = 60.0  # generous: every wait below ends as soon as its condition holds


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split() if alive(int(p))}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: it only waits to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def scrape(server: WahookProcess, ctx: ssl.SSLContext) -> dict[str, float]:
    """One /metrics scrape on a fresh connection: its series by name (and labels)."""
    status, body = post(server.http_url + "/metrics", b"", ctx, method="GET", signature=None)
    assert status == 200
    series = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    return series


POSTS_200 = 'wahook_http_requests_total{handler="webhook",method="POST",code="200"}'


def per_front(server: WahookProcess, ctx: ssl.SSLContext, want: int) -> dict[int, dict[str, float]]:
    """Scrapes until ``want`` different fronts answered one; the last scrape of each, by pid."""
    seen: dict[int, dict[str, float]] = {}

    def more() -> bool:
        series = scrape(server, ctx)
        seen[int(series["wahook_worker_pid"])] = series
        return len(seen) >= want

    wait_until(more, f"{want} fronts to answer /metrics", within=WAIT)
    return seen


async def test_two_fronts_store_once_serve_both_and_deliver_over_grpc(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "d", args=WORKERS)
    fronts = children(server.proc.pid)
    assert len(fronts) == 2
    ctx = certs.client_context()
    bodies = [samples.body("text") for _ in range(40)]
    for body in bodies:  # each on a fresh connection: the kernel spreads them
        assert post(server.webhook_url, body, ctx)[0] == 200
    retry = bodies[0]
    answers = [post(server.webhook_url, retry, ctx) for _ in range(30)]
    assert {status for status, _ in answers} == {200}
    assert all(b'"new": 0' in body for _, body in answers)  # a retry is never new
    stored = await list_events(server.grpc_target)
    assert len(stored) == 40
    assert {e.id for e in stored} == event_ids(bodies)

    seen = per_front(server, ctx, 2)
    assert set(seen) == fronts  # the pids answering are the parent's two children
    # Both fronts served POSTs (70 connections spread by the kernel), and every POST
    # is counted by exactly one of them.
    assert all(s[POSTS_200] > 0 for s in seen.values()), seen
    assert sum(s["wahook_events_appended_total"] for s in seen.values()) <= 40
    # The store and delivery series are the parent's, the same through either front.
    assert all(s["wahook_workers"] == 2 for s in seen.values())

    got = await collect(server.grpc_target, "svc", 40, quiet=0.5)
    assert sorted(d.event.sequence for d in got) == list(range(1, 41))
    ready = post(server.http_url + "/readyz", b"", ctx, method="GET", signature=None)
    assert ready[0] == 200
    log = server.stderr()
    assert "2 webhook front processes (--workers) over one event log" in log
    assert re.search(r"2 workers listening on port \d+: pids \d+ \d+", log)
    assert server.terminate() == 0
    assert not any(alive(pid) for pid in fronts)


async def test_kill_9_of_one_front_under_load_loses_nothing_answered_200(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "d", args=WORKERS)
    ctx = certs.client_context()
    fronts = children(server.proc.pid)
    assert len(fronts) == 2
    load = Load(server, ctx, threads=4, each=150).start()
    wait_for(lambda: load.count() >= 60, WAIT)
    # A front holding some of the load's keep-alive connections (the kernel may have
    # given them all to one): the one whose counters show POSTs answered.
    serving = per_front(server, ctx, 2)
    victim = next(pid for pid, s in serving.items() if s.get(POSTS_200, 0) > 0)
    os.kill(victim, signal.SIGKILL)  # no drain: its connections just end
    load.join()
    assert load.errors > 0, "the kill interrupted nothing"
    assert set(load.other) <= {503}, load.other  # refused (retried by Meta), never lost
    assert server.proc.poll() is None, "a front's death took the parent down"

    # The parent starts the killed front again, and the new one serves.
    wait_until(
        lambda: len(children(server.proc.pid) - fronts) == 1, "the front's restart", within=WAIT
    )
    now = children(server.proc.pid)
    assert len(now) == 2
    assert victim not in now
    assert set(per_front(server, ctx, 2)) == now
    assert "exited with signal SIGKILL; starting it again" in server.stderr()

    # Every event answered 200 is stored, and delivered.
    ok_ids = event_ids(load.ok)
    assert len(ok_ids) >= 60
    stored = {e.id for e in await list_events(server.grpc_target)}
    assert not ok_ids - stored, f"{len(ok_ids - stored)} events answered 200 are not stored"
    got = await collect(server.grpc_target, "after-kill", len(stored), timeout=30, quiet=0.5)
    assert ok_ids <= {d.event.id for d in got}


async def test_sigterm_of_the_parent_drains_every_front_and_exits_0(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    data = tmp_path / "d"
    server = wahook_factory.start(data, args=WORKERS, **ports)
    ctx = certs.client_context()
    fronts = children(server.proc.pid)
    load = Load(server, ctx, threads=4, each=150).start()
    wait_for(lambda: load.count() >= 60, WAIT)
    assert server.terminate(timeout=60) == 0
    load.join()
    assert set(load.other) <= {503}, load.other
    assert not any(alive(pid) for pid in fronts), "a front outlived its parent's drain"
    log = server.stderr()
    assert log.count("front stopped") == 2
    assert "stopped" in log.splitlines()[-1]
    ok_ids = event_ids(load.ok)

    # On the same data directory (one process now), every 200 is there.
    again = wahook_factory.start(data, **ports)
    stored = {e.id for e in await list_events(again.grpc_target)}
    assert not ok_ids - stored


async def test_kill_9_of_the_parent_under_load_loses_nothing_answered_200(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    # The parent holds the writer: a front waiting for its append's answer when the parent
    # dies answers 503 (or its connection ends), never 200.
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    data = tmp_path / "d"
    server = wahook_factory.start(data, args=WORKERS, **ports)
    ctx = certs.client_context()
    acked = await _pre_acked(server, ctx)
    fronts = children(server.proc.pid)
    load = Load(server, ctx, threads=4, each=150).start()
    wait_for(lambda: load.count() >= 60, WAIT)
    server.kill()
    load.join()
    assert set(load.other) <= {503}, load.other
    wait_until(
        lambda: not any(alive(pid) for pid in fronts), "the orphaned fronts to exit", within=WAIT
    )
    ok_ids = event_ids(load.ok)
    assert len(ok_ids) >= 60
    restarted = wahook_factory.start(data, args=WORKERS, **ports)
    await _check_after_restart(restarted, ok_ids, acked)


def test_parent_killed_fronts_exit(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    server = wahook_factory.start(tmp_path / "d", args=WORKERS)
    fronts = children(server.proc.pid)
    assert len(fronts) == 2
    server.kill()
    wait_until(
        lambda: not any(alive(pid) for pid in fronts), "the orphaned fronts to exit", within=WAIT
    )
    assert server.stderr().count("the parent process is gone") == 2


def test_port_in_use_and_bad_worker_counts_are_refused_clearly(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    first = wahook_factory.start(tmp_path / "a", args=WORKERS)
    port = int(first.http_url.rsplit(":", 1)[1])
    with pytest.raises(AssertionError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
        wahook_factory.start(tmp_path / "b", args=WORKERS, http_port=port)
    with pytest.raises(AssertionError, match=r"workers must be 1 to 64: 65"):
        wahook_factory.start(tmp_path / "c", args=["--workers", "65"])


async def test_redis_two_fronts_append_themselves_once_per_body(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        env = {"WAHOOK_STORE": f"redis://127.0.0.1:{redis.port}/0"}
        server = wahook_factory.start(tmp_path / "d", args=WORKERS, env=env)
        ctx = certs.client_context()
        bodies = [samples.body("text") for _ in range(30)]
        for body in [*bodies, *bodies]:  # each twice: Meta's retries
            assert post(server.webhook_url, body, ctx)[0] == 200
        seen = per_front(server, ctx, 2)
        assert all(s[POSTS_200] > 0 for s in seen.values()), seen
        stored = await list_events(server.grpc_target)
        assert {e.id for e in stored} == event_ids(bodies)
        assert len(stored) == 30
        got = await collect(server.grpc_target, "svc", 30, quiet=0.5)
        assert sorted(d.event.sequence for d in got) == sorted(e.sequence for e in stored)
        assert not (tmp_path / "d" / "events.sqlite3").exists()
        assert server.terminate() == 0
    finally:
        redis.stop()
