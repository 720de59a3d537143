"""End to end with WAHOOK_STORE=redis://...: two `wahook serve` replicas on one real
redis-server (with a password) behave as one sidecar behind a load balancer."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import collect, group_info, list_events, post
from redis_server import start_redis
from wahook import samples
from wahook_testkit import Certs, WahookFactory

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-redis-pw-4f1c"  # a throwaway server's password


async def test_two_replicas_on_one_redis_store_once_and_deliver_through_either(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    redis = start_redis(tmp_path / "redis", password=PASSWORD)
    try:
        env = {"WAHOOK_STORE": f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"}
        a = wahook_factory.start(tmp_path / "a", env=env)
        b = wahook_factory.start(tmp_path / "b", env=env)
        ctx = certs.client_context()
        body = samples.body("text")
        # Meta's first delivery lands on one replica, its retry on the other.
        assert post(a.webhook_url, body, ctx)[0] == 200
        assert post(b.webhook_url, body, ctx)[0] == 200
        assert len(await list_events(a.grpc_target)) == 1
        got = await collect(b.grpc_target, "svc", 1, quiet=0.5)
        assert [(d.event.sequence, d.attempt) for d in got] == [(1, 1)]
        assert got[0].event.message.text.body
        info = await group_info(a.grpc_target, "svc")
        assert info is not None
        assert (info.pending_count, info.lag) == (0, 0)
        assert not (tmp_path / "a" / "events.sqlite3").exists()
        assert a.terminate() == 0
        assert b.terminate() == 0
        for replica in (a, b):
            assert PASSWORD not in replica.stderr()
            assert f"redis://:***@127.0.0.1:{redis.port}/0" in replica.stderr()
    finally:
        redis.stop()
