"""End to end: a 200 is a promise. kill -9 or SIGTERM the sidecar under a load of signed
POSTs, restart it on the same data directory, and every event whose POST got 200 is in
the log and delivered; what a group acked before the crash is not delivered again."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import collect, group_info, list_events, post
from wahook import samples
from wahook.core.normalize import normalize
from wahook_testkit import Certs, WahookFactory, WahookProcess, free_port, sign

pytestmark = pytest.mark.e2e


class Load:
    """Threads posting distinct signed bodies on keep-alive connections until told to
    stop or the server goes away; remembers which bodies were answered 200."""

    def __init__(self, server: WahookProcess, ctx: ssl.SSLContext, threads: int, each: int):
        self.server, self.ctx, self.each = server, ctx, each
        self.ok: list[bytes] = []
        self.other: list[int] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join(60)

    def count(self) -> int:
        with self.lock:
            return len(self.ok)

    def _connect(self) -> http.client.HTTPSConnection:
        port = int(self.server.http_url.rsplit(":", 1)[1])
        return http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=30)

    def _run(self) -> None:
        conn = self._connect()
        for _ in range(self.each):
            if self.stop.is_set():
                break
            body = samples.body("text")
            try:
                conn.request("POST", "/webhook", body, {"X-Hub-Signature-256": sign(body)})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                # The server died or closed this connection: what was sent is unknown,
                # so it counts for nothing. Try a fresh connection (fails once it's gone).
                with self.lock:
                    self.errors += 1
                conn.close()
                conn = self._connect()
                continue
            with self.lock:
                if resp.status == 200:
                    self.ok.append(body)
                else:
                    self.other.append(resp.status)
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = self._connect()
        conn.close()


def event_ids(bodies: list[bytes]) -> set[str]:
    return {e.id for body in bodies for e in normalize(body, 0.0)}


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for load"
        time.sleep(0.005)


async def _pre_acked(server: WahookProcess, ctx: ssl.SSLContext) -> set[str]:
    """Ten events the group 'crash' takes and acks before the load (all acks applied)."""
    bodies = [samples.body("text") for _ in range(10)]
    for body in bodies:
        assert post(server.webhook_url, body, ctx)[0] == 200
    got = await collect(server.grpc_target, "crash", 10)
    assert len(got) == 10
    async with asyncio.timeout(60):  # the acks applied
        while True:
            info = await group_info(server.grpc_target, "crash")
            if info is not None and info.pending_count == 0:
                break
            await asyncio.sleep(0.02)
    return event_ids(bodies)


async def _check_after_restart(server: WahookProcess, ok_ids: set[str], acked: set[str]) -> None:
    stored = {e.id for e in await list_events(server.grpc_target)}
    missing = ok_ids - stored
    assert not missing, f"{len(missing)} events answered 200 are not in the log"
    # The group resumes: it gets every 200'd event (possibly some twice, at least once)
    # and none of the ten it acked before the crash.
    want = len(stored) - len(acked)
    got = await collect(server.grpc_target, "crash", want, timeout=30, quiet=0.5)
    delivered = {d.event.id for d in got}
    assert not delivered & acked, "an event acked before the crash was delivered again"
    assert ok_ids <= delivered
    info = await group_info(server.grpc_target, "crash")
    assert info is not None
    assert info.pending_count == 0


async def test_kill_9_under_load_loses_nothing_answered_200(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    data = tmp_path / "data"
    server = wahook_factory.start(data, **ports)
    ctx = certs.client_context()
    acked = await _pre_acked(server, ctx)

    load = Load(server, ctx, threads=4, each=150).start()
    wait_for(lambda: load.count() >= 60, 60)
    server.kill()  # SIGKILL in the middle of the load: no drain
    load.join()
    assert load.errors > 0, "the kill did not interrupt the load"
    ok_ids = event_ids(load.ok)
    assert len(ok_ids) >= 60

    restarted = wahook_factory.start(data, **ports)
    await _check_after_restart(restarted, ok_ids, acked)


async def test_sigterm_under_load_drains_and_exits_0(
    tmp_path: Path, wahook_factory: type[WahookFactory], certs: Certs
) -> None:
    ports = {"http_port": free_port(), "grpc_port": free_port()}
    data = tmp_path / "data"
    server = wahook_factory.start(data, **ports)
    ctx = certs.client_context()
    acked = await _pre_acked(server, ctx)

    load = Load(server, ctx, threads=4, each=150).start()
    wait_for(lambda: load.count() >= 60, 60)
    assert server.terminate(timeout=30) == 0
    load.join()
    assert set(load.other) <= {503}, load.other  # refused while draining, never lost
    assert "stopped" in server.stderr()
    ok_ids = event_ids(load.ok)

    restarted = wahook_factory.start(data, **ports)
    await _check_after_restart(restarted, ok_ids, acked)
