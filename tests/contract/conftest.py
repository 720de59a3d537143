"""Backends the EventLog contract suite runs against, and event builders for it.

A backend knows how to open a log instance on its store (again, for restarts and for a
second instance racing the first) and how many commits it has made, if it batches.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest
from redis_server import RedisServer, start_redis
from wahook.store.base import AppendResult, EventLog
from wahook.store.redis import RedisEventLog
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2, message_pb2, status_pb2
from wahook.workers.handoff import FrontLink, RemoteAppender

PHONE_ID = "15550100001"
WABA_ID = "15550100900"


class Backend(Protocol):
    async def open(self) -> EventLog:
        """A new log instance on this test's store (the same store every time)."""
        ...

    def commits(self, log: EventLog) -> int | None:
        """Transactions committed by ``log`` so far; None when the backend does not batch
        appends into commits (the group-commit test is then skipped, saying so)."""
        ...


class SqliteBackend:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "data" / "events.sqlite3"

    async def open(self) -> EventLog:
        return await SqliteEventLog.open(self.path)

    def commits(self, log: EventLog) -> int | None:
        assert isinstance(log, SqliteEventLog)
        return log.metrics().commits


class HandoffLog:
    """A `serve --workers` front's view of the SQLite log: appends and /readyz go through
    the front's hand-off (wahook.workers.handoff: prepared rows over a real socketpair to
    the parent's group-commit writer); everything else is the parent's log, as gRPC is."""

    def __init__(self, parent: SqliteEventLog, front: RemoteAppender, link: FrontLink) -> None:
        self.parent = parent
        self.front = front
        self.link = link

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        return self.front.append(events)

    async def check_writable(self) -> None:
        await self.front.check_writable()

    async def close(self) -> None:
        await self.front.close()
        self.link.close()
        await self.parent.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parent, name)


class SqliteHandoffBackend(SqliteBackend):
    async def open(self) -> EventLog:
        parent = await SqliteEventLog.open(self.path)
        parent_end, front_end = socket.socketpair()
        link = FrontLink(parent.append_rows_many, parent.check_writable, list)
        await link.connect(parent_end)
        front = RemoteAppender()
        await front.connect(front_end)
        return HandoffLog(parent, front, link)  # type: ignore[return-value]

    def commits(self, log: EventLog) -> int | None:
        assert isinstance(log, HandoffLog)
        return log.parent.metrics().commits


class RedisBackend:
    """Every instance opened on one Redis shares its keys, like replicas of a sidecar."""

    def __init__(self, server: RedisServer) -> None:
        self.url = server.url

    async def open(self) -> EventLog:
        return await RedisEventLog.open(self.url, prefix="contract")

    def commits(self, log: EventLog) -> int | None:
        assert isinstance(log, RedisEventLog)
        return log.metrics().commits


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


class Opened:
    """Opens log instances for one test and closes every one of them at teardown."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.logs: list[EventLog] = []

    async def open(self) -> EventLog:
        log = await self.backend.open()
        self.logs.append(log)
        return log


@pytest.fixture(params=["sqlite", "sqlite-handoff", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    if request.param == "sqlite-handoff":
        return SqliteHandoffBackend(tmp_path)
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.client().flushdb()  # each test starts on an empty store
        return RedisBackend(server)
    raise AssertionError(request.param)  # pragma: no cover


@pytest.fixture
async def opened(backend: Backend) -> AsyncIterator[Opened]:
    o = Opened(backend)
    yield o
    for log in o.logs:
        await log.close()


@pytest.fixture
async def event_log(opened: Opened) -> EventLog:
    return await opened.open()


def ts(seconds: float) -> dict[str, int]:
    return {"seconds": int(seconds), "nanos": round((seconds - int(seconds)) * 1e9)}


def message(
    n: int,
    *,
    received: float | None = None,
    phone_number_id: str = PHONE_ID,
    waba_id: str = WABA_ID,
    type_name: str = "text",
) -> event_pb2.Event:
    """An inbound message event with made-up ids; ``n`` makes it distinct."""
    wamid = f"wamid.TEST{n:06d}"
    key = f"message:{phone_number_id}:{wamid}"
    mtype = message_pb2.MESSAGE_TYPE_TEXT if type_name == "text" else message_pb2.MESSAGE_TYPE_IMAGE
    return event_pb2.Event(
        id=f"evt_{n:032x}",
        dedupe_key=key,
        type=event_pb2.EVENT_TYPE_MESSAGE,
        received_time=ts(1_700_000_000.0 + n if received is None else received),
        occurred_time=ts(1_700_000_000 + n),
        waba_id=waba_id,
        phone_number_id=phone_number_id,
        field="messages",
        raw_json='{"id":"' + wamid + '"}',
        message=message_pb2.Message(
            id=wamid, type=mtype, type_name=type_name, **{"from": "15550101234"}
        ),
    )


def status(
    n: int,
    message_id: str,
    state: int,
    occurred: int,
    *,
    errors: list[tuple[int, str]] | None = None,
) -> event_pb2.Event:
    """A status event for outbound message ``message_id``."""
    name = status_pb2.DeliveryState.Name(state).removeprefix("DELIVERY_STATE_").lower()
    return event_pb2.Event(
        id=f"evt_{0x5000000 + n:032x}",
        dedupe_key=f"status:{PHONE_ID}:{message_id}:{name}",
        type=event_pb2.EVENT_TYPE_STATUS,
        received_time=ts(1_700_000_000.0 + n),
        occurred_time=ts(occurred),
        waba_id=WABA_ID,
        phone_number_id=PHONE_ID,
        field="messages",
        status=status_pb2.Status(
            id=message_id,
            state=state,  # type: ignore[arg-type]
            status_name=name,
            recipient_id="15550105678",
            errors=[{"code": c, "title": t} for c, t in (errors or [])],
        ),
    )
