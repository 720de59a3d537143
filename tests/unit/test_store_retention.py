"""Periodic retention against a real SQLite log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from wahook.store.base import EventFilter, GroupSettings, StartPosition
from wahook.store.retention import (
    expire_groups_periodically,
    expire_idle_groups,
    prune_periodically,
)
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2


def event(n: int, received: int) -> event_pb2.Event:
    return event_pb2.Event(
        id=f"evt_{n:032x}",
        dedupe_key=f"message:15550100001:wamid.RET{n:04d}",
        type=event_pb2.EVENT_TYPE_MESSAGE,
        received_time={"seconds": received},
    )


async def test_prunes_events_older_than_max_age(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        await log.append([event(1, 1_000), event(2, 5_000), event(3, 9_000)])
        task = asyncio.create_task(
            prune_periodically(log, max_age=4_000, every=0.01, clock=lambda: 10_000.0)
        )
        async with asyncio.timeout(5):
            while len(await log.list_events(EventFilter(), 0, 0, 10)) != 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [e.id for e in await log.list_events(EventFilter(), 0, 0, 10)] == [event(3, 0).id]
    finally:
        await log.close()


async def test_an_unavailable_log_is_logged_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    await log.close()
    task = asyncio.create_task(prune_periodically(log, every=0.01))
    async with asyncio.timeout(30):  # two failed rounds, however slow the machine
        while caplog.text.count("pruning the event log failed") < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert caplog.text.count("pruning the event log failed") >= 2


async def test_idle_groups_expire_periodically_unless_connected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        idle = GroupSettings(expire_after_idle=600.0)
        for name in ("abandoned", "connected"):
            await log.create_group(name, EventFilter(), StartPosition(), 1_000.0, idle)
        task = asyncio.create_task(
            expire_groups_periodically(
                log, lambda: ["connected"], every=0.01, clock=lambda: 2_000.0
            )
        )
        async with asyncio.timeout(5):
            while await log.group_info("abandoned") is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        info = await log.group_info("connected")
        assert info is not None
        assert info.last_active == 2_000.0
        assert "consumer group abandoned expired" in caplog.text
    finally:
        await log.close()
    # A log that fails: logged, no group named, and the next round tries again.
    assert await expire_idle_groups(log, [], 3_000.0) == []
    assert "expiring idle consumer groups failed: event log is closed" in caplog.text
