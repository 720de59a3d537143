"""`--workers`: the option, the hand-off between a front and the parent (over a real
socketpair to a real SQLite log), the port the parent holds, and a front's parts in this
process (real HTTP on 127.0.0.1). The processes themselves: tests/e2e/test_e2e_workers.py."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import tornado.httpclient
from wahook import config as cfg
from wahook import samples
from wahook.errors import ConfigError, InvalidArgumentError, LogUnavailableError
from wahook.store.base import EventFilter
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2, status_pb2
from wahook.workers.front import Front, listen_reuseport
from wahook.workers.handoff import MAX_FRAME, FrontLink, MetricValue, RemoteAppender
from wahook.workers.supervisor import Supervisor, reserve_port
from wahook_testkit import APP_SECRET, VERIFY_TOKEN, sign

BASE = {"WAHOOK_APP_SECRET": APP_SECRET, "WAHOOK_INSECURE_HTTP": "1"}


# -- the option ------------------------------------------------------------------------


def test_workers_default_to_one_and_come_from_flag_or_environment() -> None:
    assert cfg.load({}, BASE).workers == 1
    assert cfg.load({}, {**BASE, "WAHOOK_WORKERS": "4"}).workers == 4
    assert cfg.load({"workers": "64"}, {**BASE, "WAHOOK_WORKERS": "4"}).workers == 64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--workers: workers must be 1 to 64: 0"),
        ("65", "--workers: workers must be 1 to 64: 65"),
        ("two", "--workers: not a number of workers: 'two' (1 to 64)"),
    ],
)
def test_a_bad_worker_count_is_refused_saying_why(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.load({"workers": value}, BASE)
    assert caught.value.message == message


# -- the hand-off ----------------------------------------------------------------------


@dataclass
class Pair:
    parent: SqliteEventLog
    link: FrontLink
    front: RemoteAppender
    hellos: list[int]
    hello: asyncio.Event


_open: list[Pair] = []


@pytest.fixture(autouse=True)
async def _close_pairs() -> AsyncIterator[None]:
    yield
    while _open:
        pair = _open.pop()
        await pair.front.close()
        pair.link.close()
    await asyncio.sleep(0)  # the transports' connection_lost, then their sockets close


async def _pair(
    parent: SqliteEventLog,
    *,
    ready: Callable[[], Awaitable[None]] | None = None,
    metrics: Callable[[], list[MetricValue]] = list,
    shared_writer: bool = True,
) -> Pair:
    parent_end, front_end = socket.socketpair()
    hellos: list[int] = []
    hello = asyncio.Event()

    def on_hello(pid: int) -> None:
        hellos.append(pid)
        hello.set()

    link = FrontLink(
        parent.append_rows_many if shared_writer else None,
        ready or parent.check_writable,
        metrics,
        on_hello=on_hello,
    )
    await link.connect(parent_end)
    front = RemoteAppender()
    await front.connect(front_end)
    pair = Pair(parent, link, front, hellos, hello)
    _open.append(pair)
    return pair


@pytest.fixture
async def parent(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    yield log
    await log.close()


def _message(n: int) -> event_pb2.Event:
    return event_pb2.Event(
        id=f"evt_{n:032x}", dedupe_key=f"message:1:wamid.{n}", type=event_pb2.EVENT_TYPE_MESSAGE
    )


def _status(n: int, message_id: str) -> event_pb2.Event:
    event = event_pb2.Event(
        id=f"evt_{0x900 + n:032x}",
        dedupe_key=f"status:1:{message_id}:failed",
        type=event_pb2.EVENT_TYPE_STATUS,
    )
    event.occurred_time.seconds = 1_700_000_000
    event.status.id = message_id
    event.status.state = status_pb2.DELIVERY_STATE_FAILED
    event.status.recipient_id = "15550105678"
    event.status.errors.add(code=131026, title="undeliverable")
    return event


async def test_appends_cross_to_the_parents_writer_and_come_back_with_their_result(
    parent: SqliteEventLog,
) -> None:
    pair = await _pair(parent)
    first = await pair.front.append([_message(1), _status(1, "wamid.out1")])
    assert (first.sequences, first.new_count) == ([1, 2], 2)
    again = await pair.front.append([_message(1)])  # a retry: stored once
    assert (again.sequences, again.new_count) == ([1], 0)
    record = await parent.message_status("wamid.out1")
    assert record is not None
    assert record.state == status_pb2.DELIVERY_STATE_FAILED
    assert [e.code for e in record.errors] == [131026]
    # Many appends of one loop iteration: one frame each way, one group commit.
    commits = parent.metrics().commits
    results = await asyncio.gather(*(pair.front.append([_message(n)]) for n in range(2, 52)))
    assert [r.sequences for r in results] == [[n] for n in range(3, 53)]
    assert parent.metrics().commits - commits == 1


async def test_a_refused_append_is_refused_alone(parent: SqliteEventLog) -> None:
    pair = await _pair(parent)
    await pair.front.append([_message(1)])
    clash = _message(1)
    clash.dedupe_key = "message:1:another"
    with pytest.raises(InvalidArgumentError, match="stored for another dedupe_key"):
        await pair.front.append([clash])
    with pytest.raises(InvalidArgumentError, match=r"events\[0\]\.dedupe_key is empty"):
        pair.front.append([event_pb2.Event(id="evt_x")])  # refused before anything is sent
    assert (await pair.front.append([_message(2)])).sequences == [2]


async def test_the_parent_gone_fails_waiting_appends_with_503_and_refuses_new_ones(
    parent: SqliteEventLog,
) -> None:
    pair = await _pair(parent)
    waiting = pair.front.append([_message(1)])
    pair.link.close()  # before the append is read: the parent is gone
    with pytest.raises(LogUnavailableError, match="writer process is gone"):
        await waiting
    await asyncio.wait_for(pair.front.lost.wait(), 30)
    with pytest.raises(LogUnavailableError):
        pair.front.append([_message(2)])


async def test_a_closed_log_or_no_shared_writer_answers_log_unavailable(
    parent: SqliteEventLog, tmp_path: Path
) -> None:
    redis_like = await _pair(parent, shared_writer=False)
    with pytest.raises(LogUnavailableError, match="no shared writer"):
        await redis_like.front.append([_message(1)])
    other = await SqliteEventLog.open(tmp_path / "other.sqlite3")
    pair = await _pair(other)
    await other.close()
    with pytest.raises(LogUnavailableError, match="event log is closed"):
        await pair.front.append([_message(1)])


async def test_readiness_and_metrics_are_the_parents(parent: SqliteEventLog) -> None:
    full = LogUnavailableError("the data directory takes no writes: No space left on device")

    async def not_ready() -> None:
        raise full

    pair = await _pair(
        parent, ready=not_ready, metrics=lambda: [("wahook_x_total", "counter", "X.", 7.0)]
    )
    with pytest.raises(LogUnavailableError) as caught:
        await pair.front.check_writable()
    assert caught.value.message == full.message
    assert await pair.front.parent_metrics() == [("wahook_x_total", "counter", "X.", 7.0)]
    pair.front.hello()
    await asyncio.wait_for(pair.hello.wait(), 30)
    assert pair.hellos == [os.getpid()]
    healthy = await _pair(parent)
    await healthy.front.check_writable()


async def test_a_frame_that_is_not_one_closes_the_channel(parent: SqliteEventLog) -> None:
    parent_end, front_end = socket.socketpair()
    link = FrontLink(parent.append_rows_many, parent.check_writable, list)
    await link.connect(parent_end)
    front_end.sendall(struct.pack(">IB", MAX_FRAME + 1, 2))
    front_end.setblocking(False)
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(loop.sock_recv(front_end, 1), 30) == b""  # closed by it
    front_end.close()


# -- the port --------------------------------------------------------------------------


def test_the_parent_holds_the_port_for_fronts_and_refuses_a_taken_one() -> None:
    keeper = reserve_port("127.0.0.1", 0)
    port = keeper.getsockname()[1]
    try:
        assert port > 0
        # Fronts join it (SO_REUSEPORT); anything else is refused.
        fronts = [listen_reuseport("127.0.0.1", port) for _ in range(2)]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            reserve_port("127.0.0.1", port)
        plain = socket.socket()
        with pytest.raises(OSError, match="in use"):
            plain.bind(("127.0.0.1", port))
        plain.close()
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass  # a front got it: the keeper never listens
        for sock in fronts:
            sock.close()
    finally:
        keeper.close()


# -- a front's parts, in this process ----------------------------------------------------


async def test_a_front_serves_posts_through_the_parent_and_reloads_its_secrets(
    parent: SqliteEventLog,
) -> None:
    pair = await _pair(parent, metrics=lambda: [("wahook_store_commits_total", "counter", "C.", 3)])
    env = {**BASE, "WAHOOK_VERIFY_TOKEN": VERIFY_TOKEN, "WAHOOK_HTTP_PORT": "0"}
    config = cfg.load({"http_host": "127.0.0.1"}, env)
    front = Front(config, pair.front, 1)
    await front.start()
    port = next(iter(front.http_server._sockets.values())).getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)

    async def fetch(path: str, **kwargs: object) -> tornado.httpclient.HTTPResponse:
        return await client.fetch(url + path, raise_error=False, **kwargs)  # type: ignore[arg-type]

    try:
        body = samples.body("text")
        posted = await fetch(
            "/webhook", method="POST", body=body, headers={"X-Hub-Signature-256": sign(body)}
        )
        assert posted.code == 200
        assert len(await parent.list_events(EventFilter(), 0, 0, 10)) == 1
        assert (await fetch("/readyz")).code == 200
        metrics = (await fetch("/metrics")).body.decode()
        assert "wahook_worker_index 1" in metrics
        assert "wahook_store_commits_total 3" in metrics  # the parent's
        assert "wahook_events_appended_total 1" in metrics  # this front's

        front.reload_secrets(
            cfg.load(
                {"http_host": "127.0.0.1"},
                {**env, "WAHOOK_APP_SECRET": "new", "WAHOOK_VERIFY_TOKEN": "t2"},
            )
        )
        refused = await fetch(
            "/webhook", method="POST", body=body, headers={"X-Hub-Signature-256": sign(body)}
        )
        assert refused.code == 401
        accepted = await fetch(
            "/webhook",
            method="POST",
            body=body,
            headers={"X-Hub-Signature-256": sign(body, "new")},
        )
        assert accepted.code == 200
        challenge = await fetch("/webhook?hub.mode=subscribe&hub.verify_token=t2&hub.challenge=42")
        assert challenge.body == b"42"
    finally:
        client.close()
        await front.drain()
    assert front.deps.drain.draining
    with pytest.raises(LogUnavailableError):
        pair.front.append([_message(9)])


# -- the supervisor, in this process, with real front processes ---------------------------


async def test_the_supervisor_starts_restarts_and_stops_real_fronts(
    parent: SqliteEventLog, caplog: pytest.LogCaptureFixture
) -> None:
    async def ready() -> None:
        await parent.check_writable()

    def make_link(on_hello: Callable[[int], None]) -> FrontLink:
        return FrontLink(parent.append_rows_many, ready, list, on_hello=on_hello)

    spec = {
        "flags": {"app_secret": APP_SECRET, "insecure_http": True, "http_host": "127.0.0.1"},
        "dev": False,
    }
    supervisor = Supervisor(2, "127.0.0.1", 0, spec, make_link)
    await supervisor.start()
    try:
        assert supervisor.alive() == 2
        first = set(supervisor.pids())
        url = f"http://127.0.0.1:{supervisor.port}/webhook"
        client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        try:
            body = samples.body("text")
            posted = await client.fetch(
                url, method="POST", body=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert posted.code == 200
        finally:
            client.close()
        assert await parent.head_sequence() == 1
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(60):  # the watcher notices and starts it again
            while True:
                if supervisor.restarts and supervisor.alive() == 2:
                    break
                await asyncio.sleep(0.01)
        assert victim not in supervisor.pids()
        assert "exited with signal SIGKILL; starting it again" in caplog.text
        supervisor.signal_all(signal.SIGHUP)  # a reload: the fronts keep running
    finally:
        await supervisor.stop()
    assert supervisor.alive() == 0


async def test_the_supervisor_fails_to_start_when_a_front_cannot(parent: SqliteEventLog) -> None:
    def make_link(on_hello: Callable[[int], None]) -> FrontLink:
        return FrontLink(parent.append_rows_many, parent.check_writable, list, on_hello=on_hello)

    # A front cannot build its Config (no app secret, HTTPS without a certificate).
    spec = {"flags": {"http_host": "127.0.0.1", "app_secret": ""}, "dev": False}
    supervisor = Supervisor(1, "127.0.0.1", 0, spec, make_link)
    with pytest.raises(ConfigError, match="worker 0 did not start"):
        await supervisor.start()
    assert supervisor.alive() == 0
