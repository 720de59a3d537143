"""WAL checkpoints off the commit path: the writer never checkpoints, a thread of its own
does (PASSIVE), the writer catches up between batches so the WAL starts over instead of
growing, and a WAL that still grows past its limit gets a RESTART checkpoint."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wahook.store.sqlite import SqliteEventLog
from wahook.store.sqlite_schema import WAL_SIZE_LIMIT
from wahook.store.sqlite_writer import WalCheckpointer
from wahook.v1 import event_pb2


def event(n: int) -> event_pb2.Event:
    return event_pb2.Event(
        id=f"evt_{n:032x}",
        dedupe_key=f"message:15550100001:wamid.WAL{n:08d}",
        type=event_pb2.EVENT_TYPE_MESSAGE,
        received_time={"seconds": 1_700_000_000 + n},
        phone_number_id="15550100001",
        waba_id="15550100900",
        raw_json="x" * 600,
    )


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    opened = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        yield opened
    finally:
        await opened.close()


def checkpointer(log: SqliteEventLog) -> WalCheckpointer:
    ck = log._writer.checkpointer
    assert ck is not None
    return ck


def by_hand(log: SqliteEventLog) -> WalCheckpointer:
    """The checkpointer with its thread stopped: rounds run only when the test says."""
    ck = checkpointer(log)
    ck._stop.set()
    ck._thread.join()
    return ck


def wal_frames(path: Path) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint reports them; it blocks nobody)."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


async def test_the_writer_never_checkpoints_itself(log: SqliteEventLog) -> None:
    conn = log._writer._conn
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT


async def test_under_steady_appends_the_wal_starts_over_instead_of_growing(
    log: SqliteEventLog,
) -> None:
    n = 0
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:  # about 8 checkpoint rounds of two appends a commit
        await asyncio.gather(log.append([event(n)]), log.append([event(n + 1)]))
        n += 2
    commits = log.metrics().commits
    assert checkpointer(log).checkpoints >= 3
    # Every commit adds at least three frames (events, id index, sqlite_sequence): a
    # WAL that never started over would hold 3 * commits frames.
    assert wal_frames(log.path) < commits
    assert (await log.head_sequence()) == n


async def test_an_idle_log_is_not_checkpointed(log: SqliteEventLog) -> None:
    await log.append([event(1)])
    await asyncio.sleep(0.25)
    rounds = checkpointer(log).checkpoints
    await asyncio.sleep(0.25)
    assert checkpointer(log).checkpoints == rounds


async def test_a_wal_past_its_limit_gets_a_restart_checkpoint(log: SqliteEventLog) -> None:
    ck = by_hand(log)
    await log.append([event(n) for n in range(50)])
    ck._limit_frames = 0  # anything is past it
    frames, copied = await asyncio.to_thread(ck.checkpoint)
    assert (ck.restarts, copied) == (1, frames)
    await log.append([event(100)])  # the next writer starts the WAL over
    assert wal_frames(log.path) < frames
    await asyncio.to_thread(ck.checkpoint)
    assert ck.restarts == 1  # at most one RESTART a second


async def test_a_restart_waits_for_an_old_snapshot_only_briefly(log: SqliteEventLog) -> None:
    ck = by_hand(log)
    await log.append([event(n) for n in range(50)])
    reader = sqlite3.connect(log.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
        await log.append([event(n) for n in range(50, 100)])
        ck._limit_frames = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        restart = asyncio.ensure_future(asyncio.to_thread(ck.checkpoint))
        appended = await log.append([event(100)])  # waits for the RESTART at most
        frames, copied = await restart
        assert loop.time() - start < 1.5
        assert appended.sequences == [101]
        assert copied < frames  # the reader's snapshot kept the newer frames in the WAL
        assert ck.restarts == 1
    finally:
        reader.close()


async def test_a_failing_checkpoint_is_logged_and_retried(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ck = checkpointer(log)
    calls: list[int] = []

    def failing() -> tuple[int, int]:
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ck, "checkpoint", failing)
    with caplog.at_level(logging.WARNING, logger="wahook.store.sqlite_writer"):
        for n in range(3):
            await log.append([event(n)])
            await asyncio.sleep(0.15)
    assert len(calls) >= 2
    assert "WAL checkpoint failed" in caplog.text
    assert ck._thread.is_alive()
