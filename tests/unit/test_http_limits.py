"""The public listener under abuse: timeouts per request phase, the connection cap,
414/431 for oversized heads, nosniff on the echo, 503 warnings rate-limited."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tornado.httpserver
import tornado.netutil
from wahook import samples
from wahook.core.signature import Keyring
from wahook.http.app import build_deps, make_http_server
from wahook.http.handlers import WebhookDeps
from wahook.http.limits import FrontLimits, connection_cap_for
from wahook.ratelog import RateLimitedLog
from wahook.store.sqlite import SqliteEventLog
from wahook_testkit import APP_SECRET, VERIFY_TOKEN, HttpFront, sign

BODY = samples.body("text")
POST = b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: %s\r\n" % sign(
    BODY
).encode() + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


@dataclass
class Front:
    port: int
    deps: WebhookDeps
    server: tornado.httpserver.HTTPServer

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, request: bytes) -> bytes:
        """``request`` on a new connection; everything the server sends until it closes."""
        reader, writer = await self.connect()
        writer.write(request)
        data = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return data


@pytest.fixture
async def front_factory(tmp_path: Path) -> AsyncIterator[object]:
    made: list[Front] = []
    event_log = await SqliteEventLog.open(tmp_path / "e.sqlite3")

    def make(limits: FrontLimits) -> Front:
        deps = build_deps(
            keyring=Keyring([APP_SECRET]), event_log=event_log, verify_token=VERIFY_TOKEN
        )
        server = make_http_server(deps, None, limits=limits)
        socks = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(socks)
        made.append(Front(socks[0].getsockname()[1], deps, server))
        return made[-1]

    yield make
    for f in made:
        f.server.stop()
        await f.server.close_all_connections()
    await event_log.close()


async def post_ok(front: Front) -> bytes:
    reader, writer = await front.connect()
    writer.write(POST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    writer.close()
    return head


async def test_a_stalled_body_is_cut_off_at_the_body_timeout(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits(body_timeout=0.3))
    reader, writer = await front.connect()
    # Complete headers, half the body, then nothing: the connection is closed, not kept.
    writer.write(POST[: POST.index(b"\r\n\r\n") + 4 + len(BODY) // 2])
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    assert front.deps.metrics.http_timeouts == 1
    assert front.deps.drain.in_flight == 0  # never counted: a stalled body holds up no drain
    assert (await post_ok(front)).startswith(b"HTTP/1.1 200")  # others still served


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What is left to read until the server closes: b"" at a clean close, and b"" too when
    a byte the client wrote after the close drew a reset (which a loaded machine makes
    likely: the trickle goes on until the client sees the close)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_a_trickled_head_is_cut_off_at_the_header_timeout(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits(header_timeout=0.3))
    reader, writer = await front.connect()
    closed = asyncio.ensure_future(_closed(reader))
    # A byte at a time, each well within the idle timeout: only the header timeout ends it.
    for byte in POST[:200]:
        if closed.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.02)
    assert await asyncio.wait_for(closed, 30) == b""
    writer.close()
    assert front.deps.metrics.http_timeouts == 1


async def test_an_idle_connection_is_closed_at_the_idle_timeout(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits(idle_timeout=0.3))
    reader, writer = await front.connect()
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()
    assert front.deps.metrics.http_timeouts == 1


async def test_at_the_connection_cap_the_longest_idle_connection_makes_room(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits(max_connections=3))
    idle = [await front.connect() for _ in range(3)]
    # A 4th client (Meta, say) behind an idle flood is served; the oldest idle one goes.
    assert (await post_ok(front)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(idle[0][0].read(), 30) == b""
    for _, writer in idle:
        writer.close()


async def _post_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(POST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    await asyncio.wait_for(reader.readexactly(length), 30)
    return head


async def test_a_burst_at_the_cap_evicts_new_connections_not_the_one_in_use(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits(max_connections=4))
    reader, writer = await front.connect()
    assert (await _post_on(reader, writer)).startswith(b"HTTP/1.1 200")
    # Eight connections complete in the kernel at once: the acceptor takes three in one
    # turn (the cap), before any of them has been seen waiting for a request.
    burst = [socket.create_connection(("127.0.0.1", front.port)) for _ in range(8)]
    try:
        assert (await _post_on(reader, writer)).startswith(b"HTTP/1.1 200")
    finally:
        for s in burst:
            s.close()
    writer.close()


async def test_at_the_cap_with_no_idle_connection_accepting_waits(  # type: ignore[no-untyped-def]
    front_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wahook.http")
    front = front_factory(FrontLimits(max_connections=1))
    reader, writer = await front.connect()
    writer.write(POST[:20])  # a request under way: not idle, never evicted
    second = asyncio.ensure_future(post_ok(front))
    # The acceptor saw the second connection and, with nothing idle to evict, paused.
    async with asyncio.timeout(30):
        while not any("connection cap reached" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110 - polls the log records
            await asyncio.sleep(0.01)
    assert not second.done()  # waiting in the backlog
    writer.close()  # the first goes: the second is accepted and answered
    assert (await asyncio.wait_for(second, 30)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.read(), 30) == b""


def test_automatic_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap_for(1024) == 896
    assert connection_cap_for(65536) == 1000
    assert connection_cap_for(100) == 1


async def test_a_long_request_target_is_414(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits())
    for size in (10 * 1024, 100 * 1024):  # under and over the head limit
        target = b"/webhook?x=" + b"a" * size
        answer = await front.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414"), (size, answer[:60])


async def test_oversized_headers_are_431(front_factory) -> None:  # type: ignore[no-untyped-def]
    front = front_factory(FrontLimits())
    answer = await front.exchange(
        b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (100 * 1024) + b"\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 431"), answer[:60]
    assert (await post_ok(front)).startswith(b"HTTP/1.1 200")


async def test_the_challenge_echo_says_nosniff(http_front: HttpFront) -> None:
    r = await http_front.fetch(
        f"/webhook?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=%3Cb%3E"
    )
    assert r.code == 200
    assert r.body == b"<b>"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_503s_are_summarised_not_logged_one_by_one(
    http_front: HttpFront, caplog: pytest.LogCaptureFixture
) -> None:
    await http_front.event_log.close()
    caplog.set_level(logging.WARNING, logger="wahook.http")
    for _ in range(30):
        r = await http_front.post_webhook(BODY)
        assert r.code == 503
    lines = [r for r in caplog.records if "request failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]


def test_rate_limited_log_counts_what_it_summarises(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t"), every=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="t")
    for t in (0.0, 1.0, 2.0, 10.5, 11.0, 25.0):
        now[0] = t
        rl.log("down: %s", "x")
    assert [r.getMessage() for r in caplog.records] == [
        "down: x",
        "down: x (3 times in the last 10s)",
        "down: x (2 times in the last 14s)",
    ]
