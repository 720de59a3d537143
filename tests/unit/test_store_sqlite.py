"""What only the SQLite backend promises: its durability settings, kill -9 safety with
real processes, dedupe across processes, lock timeouts, job isolation in a group commit,
and its metrics. The behaviour every backend shares is in tests/contract/."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Literal

import pytest
from wahook.errors import FailedPreconditionError, InvalidArgumentError, LogUnavailableError
from wahook.store.base import EventFilter, GroupSettings, StartPosition
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import event_pb2

# Builds distinct made-up message events in a child process or here.
_EVENTS = textwrap.dedent(
    """
    from wahook.v1 import event_pb2

    def event(n):
        return event_pb2.Event(
            id=f"evt_{n:032x}",
            dedupe_key=f"message:15550100001:wamid.SQL{n:08d}",
            type=event_pb2.EVENT_TYPE_MESSAGE,
            received_time={"seconds": 1_700_000_000 + n},
            phone_number_id="15550100001",
            waba_id="15550100900",
        )
    """
)
_ns: dict[str, object] = {}
exec(_EVENTS, _ns)
event = _ns["event"]


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _EVENTS + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("mode", "level"), [("full", 2), ("normal", 1)])
async def test_wal_and_the_synchronous_level_of_appends(
    tmp_path: Path, mode: Literal["full", "normal"], level: int
) -> None:
    log = await SqliteEventLog.open(tmp_path / "db" / "events.sqlite3", synchronous=mode)
    try:
        with sqlite3.connect(log.path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # synchronous is per connection: ask the writer's own connection, after a
        # bookkeeping-only transaction (NORMAL) and then an append.
        conn = log._writer._conn
        await log.create_group("g", EventFilter(), StartPosition(), 1.0)
        await log.ack_leases("g", [(1, 1)])
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        await log.append([event(1)])
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        await log.close()


@pytest.mark.parametrize("mode", ["full", "normal"])
async def test_every_acknowledged_append_survives_kill_9(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "events.sqlite3"
    child = run_child(
        """
        import asyncio, sys
        from pathlib import Path
        from wahook.store.sqlite import SqliteEventLog

        async def main():
            log = await SqliteEventLog.open(Path(sys.argv[1]), synchronous=sys.argv[2])
            n = 0
            while True:
                batch = [event(n + i) for i in range(8)]
                results = await asyncio.gather(*(log.append([e]) for e in batch))
                for e, r in zip(batch, results):
                    print(e.id, r.sequences[0], flush=True)
                n += 8

        asyncio.run(main())
        """,
        str(path),
        mode,
    )
    assert child.stdout is not None
    acknowledged: list[tuple[str, int]] = []
    deadline = time.monotonic() + 20
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        event_id, seq = line.split()
        acknowledged.append((event_id, int(seq)))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert len(acknowledged) >= 400

    log = await SqliteEventLog.open(path)
    try:
        for event_id, seq in acknowledged:
            stored = await log.get(event_id)
            assert stored is not None, event_id
            assert stored.sequence == seq
    finally:
        await log.close()


async def test_two_processes_racing_store_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    # Create the file first so both children race on appends, not on the schema.
    await (await SqliteEventLog.open(path)).close()
    code = """
        import asyncio, json, sys
        from pathlib import Path
        from wahook.store.sqlite import SqliteEventLog

        async def main():
            log = await SqliteEventLog.open(Path(sys.argv[1]))
            order = list(range(200))
            if sys.argv[2] == "reverse":
                order.reverse()
            results = await asyncio.gather(*(log.append([event(n)]) for n in order))
            await log.close()
            print(json.dumps(sum(r.new_count for r in results)))

        asyncio.run(main())
        """
    children = [run_child(code, str(path), way) for way in ("forward", "reverse")]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert sum(json.loads(out) for out in outputs) == 200
    log = await SqliteEventLog.open(path)
    try:
        stored = await log.list_events(EventFilter(), 0, 0, 1000)
        assert len(stored) == 200
        assert len({e.dedupe_key for e in stored}) == 200
    finally:
        await log.close()


async def test_lock_held_too_long_is_log_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    log = await SqliteEventLog.open(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(LogUnavailableError, match="locked"):
            await log.append([event(1)])
        with pytest.raises(LogUnavailableError):
            await log.check_writable()
        blocker.execute("ROLLBACK")
        result = await log.append([event(1)])
        assert result.new_count == 1
    finally:
        blocker.close()
        await log.close()


async def test_a_failing_job_does_not_fail_its_batch(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        only_messages = EventFilter(event_types=frozenset({event_pb2.EVENT_TYPE_MESSAGE}))
        await log.create_group("g", only_messages, StartPosition(), 1.0)
        before = log.metrics().commits
        conflicting = log.create_group(
            "g", EventFilter(waba_ids=frozenset({"1"})), StartPosition(), 1.0
        )

        async def append(n: int) -> object:
            # A coroutine like `conflicting`: all three queue their jobs when their
            # tasks first run, in one loop iteration, so they share one hand-over.
            return await log.append([event(n)])

        results = await asyncio.gather(append(1), conflicting, append(2), return_exceptions=True)
        assert isinstance(results[1], FailedPreconditionError)
        assert log.metrics().commits - before == 1
        assert await log.get(event(1).id) is not None
        assert await log.get(event(2).id) is not None
    finally:
        await log.close()


async def test_metrics_count_commits_and_events(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        await log.append([event(1), event(2)])
        await log.append([event(2), event(3)])
        await asyncio.gather(*(log.append([event(n)]) for n in range(10, 60)))
        m = log.metrics()
        assert (m.appended_events, m.duplicate_events) == (53, 1)
        assert m.commits < m.write_jobs
        assert m.largest_batch >= 10
    finally:
        await log.close()


async def test_cannot_open_is_log_unavailable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(LogUnavailableError, match="cannot open"):
        await SqliteEventLog.open(not_a_dir / "events.sqlite3")


async def test_close_wakes_waiters_and_is_idempotent(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    waiter = asyncio.create_task(log.wait_for_append(0, 600.0))
    await asyncio.sleep(0.05)
    await log.close()
    # Woken by the close: its own timeout is 10 minutes away.
    assert await asyncio.wait_for(waiter, 60) is False
    await log.close()
    with pytest.raises(LogUnavailableError):
        await log.wait_for_append(0, 0.1)


async def test_prune_works_in_chunks(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        for start in range(0, 12_000, 2_000):
            await log.append([event(n) for n in range(start, start + 2_000)])
        before = log.metrics().write_jobs
        assert await log.prune(2_000_000_000.0) == 12_000
        assert log.metrics().write_jobs - before == 3  # 5000 + 5000 + 2000
        assert await log.list_events(EventFilter(), 0, 0, 10) == []
    finally:
        await log.close()


async def test_disk_full_is_log_unavailable_and_recovers(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        await log.append([event(1)])
        # SQLite's page cap fails writes with SQLITE_FULL, exactly like a full disk.
        conn = log._writer._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = [event(n) for n in range(2, 200)]
        for e in big:
            e.raw_json = "z" * 4000
        with pytest.raises(LogUnavailableError, match="full"):
            await log.append(big)
        assert await log.get(big[0].id) is None  # nothing of the failed append stayed
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert (await log.append(big)).new_count == len(big)
    finally:
        await log.close()


async def test_a_crashing_batch_fails_its_callers_and_the_writer_lives_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        writer = log._writer
        real = writer._run_batch

        def crash_once(batch: list[object]) -> None:
            monkeypatch.setattr(writer, "_run_batch", real)
            writer._conn.execute("BEGIN IMMEDIATE")  # crashes with a transaction open
            raise ValueError("bug")

        monkeypatch.setattr(writer, "_run_batch", crash_once)
        with pytest.raises(LogUnavailableError):
            await log.append([event(1)])
        assert (await log.append([event(1)])).new_count == 1
    finally:
        await log.close()


async def test_ids_must_be_present_and_match_their_dedupe_key(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        no_id = event(1)
        no_id.id = ""
        with pytest.raises(InvalidArgumentError, match=r"events\[0\].id is empty"):
            await log.append([no_id])
        await log.append([event(2)])
        clash = event(3)
        clash.id = event(2).id  # an id not derived from this dedupe key
        with pytest.raises(InvalidArgumentError, match=r"events\[1\].id .* another dedupe_key"):
            await log.append([event(4), clash])
        assert await log.get(event(4).id) is None  # the whole append was refused
    finally:
        await log.close()


V1_SCHEMA = """
CREATE TABLE events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE, type INTEGER NOT NULL, message_type TEXT,
    phone_number_id TEXT NOT NULL, waba_id TEXT NOT NULL, received_at REAL NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX events_id ON events (id);
CREATE INDEX events_received_at ON events (received_at);
CREATE TABLE pending (group_name TEXT NOT NULL, sequence INTEGER NOT NULL,
    consumer TEXT NOT NULL, attempt INTEGER NOT NULL, deadline REAL NOT NULL,
    PRIMARY KEY (group_name, sequence)) WITHOUT ROWID;
CREATE INDEX pending_sequence ON pending (sequence);
PRAGMA user_version = 1;
"""


async def test_a_version_1_file_is_migrated_keeping_events_and_head(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(V1_SCHEMA)
        for n in (1, 2):
            e = event(n)
            e_received = e.received_time.seconds
            old.execute(
                "INSERT INTO events (id, dedupe_key, type, message_type, phone_number_id,"
                " waba_id, received_at, data) VALUES (?, ?, ?, 'text', ?, ?, ?, ?)",
                (
                    e.id,
                    e.dedupe_key,
                    e.type,
                    e.phone_number_id,
                    e.waba_id,
                    e_received,
                    e.SerializeToString(),
                ),
            )
        # Retention had deleted sequences 3..7: the head is past the last row.
        old.execute("UPDATE sqlite_sequence SET seq = 7 WHERE name = 'events'")
    log = await SqliteEventLog.open(path)
    try:
        assert await log.head_sequence() == 7
        stored = await log.get(event(2).id)
        assert stored is not None
        assert stored.sequence == 2
        again = await log.append([event(1), event(9)])
        assert (again.sequences[0], again.new_count) == (1, 1)
        assert again.sequences[1] == 8
    finally:
        await log.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 5
        indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "pending_sequence" not in indexes
        assert "events_id" not in indexes
        assert "pending_deadline" not in indexes


async def test_a_version_2_file_keeps_its_groups_and_their_due_entries(tmp_path: Path) -> None:
    """Version 3 drops the pending deadline index and adds consumer_groups.next_due; a
    group migrated with entries already due still gets them first, once."""
    path = tmp_path / "events.sqlite3"
    log = await SqliteEventLog.open(path)
    s = (await log.append([event(1), event(2), event(3)])).sequences
    await log.create_group("g", EventFilter(), StartPosition(), 1000.0)
    await log.fetch("g", "c", 2, 30.0, 1000.0)
    await log.close()
    with sqlite3.connect(path) as old:  # back to version 2 as it was
        old.execute("CREATE INDEX pending_deadline ON pending (group_name, deadline)")
        old.execute("ALTER TABLE consumer_groups DROP COLUMN next_due")
        old.execute("PRAGMA user_version = 2")
    log = await SqliteEventLog.open(path)
    try:
        got = (await log.fetch("g", "c2", 10, 30.0, 1031.0)).deliveries()
        assert [(d.event.sequence, d.attempt) for d in got] == [(s[0], 2), (s[1], 2), (s[2], 1)]
        assert (await log.fetch("g", "c2", 10, 30.0, 1032.0)).deliveries() == []
    finally:
        await log.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 5
        indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "pending_deadline" not in indexes


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with sqlite3.connect(path) as newer:
        newer.execute("PRAGMA user_version = 99")
    with pytest.raises(LogUnavailableError, match="schema version 99"):
        await SqliteEventLog.open(path)


async def test_duplicates_leave_no_gaps_in_sequences(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        first = await log.append([event(1), event(2)])
        for _ in range(5):
            await log.append([event(2), event(1)])
        last = await log.append([event(3)])
        assert [*first.sequences, *last.sequences] == [1, 2, 3]
        info = await log.create_group("g", EventFilter(), StartPosition(), 1.0)
        assert (info.head_sequence, info.lag) == (3, 3)
    finally:
        await log.close()


async def test_a_version_4_file_keeps_its_groups_with_leases_and_default_settings(
    tmp_path: Path,
) -> None:
    """Version 5 adds leases, dead letters and group settings: a group of a version 4 file
    keeps its pending entries (a delivery made before has no lease an ack id could name,
    so it comes again), gets the default settings, and counts as active at the upgrade (a
    service restarting with the new sidecar must not find its group expired)."""
    path = tmp_path / "events.sqlite3"
    log = await SqliteEventLog.open(path)
    s = (await log.append([event(1), event(2)])).sequences
    await log.create_group("g", EventFilter(), StartPosition(), 1000.0)
    await log.fetch("g", "c", 1, 30.0, 1000.0)
    await log.close()
    with sqlite3.connect(path) as old:  # back to version 4 as it was
        old.execute("DROP TABLE dead_letters")
        for table, column in (
            ("pending", "lease"),
            ("pending", "error"),
            ("consumer_groups", "leases"),
            ("consumer_groups", "max_attempts"),
            ("consumer_groups", "expire_after"),
            ("consumer_groups", "last_active"),
        ):
            old.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        old.execute("PRAGMA user_version = 4")
    before = time.time()
    log = await SqliteEventLog.open(path)
    try:
        info = await log.group_info("g")
        assert info is not None
        assert (info.pending_count, info.settings) == (1, GroupSettings())
        assert before - 1 <= info.last_active <= time.time() + 1
        assert await log.expire_groups(1000.0 + 8 * 86400) == []  # active "now", not at 1000
        got = (await log.fetch("g", "c2", 10, 30.0, 1031.0)).deliveries()
        assert [(d.event.sequence, d.attempt) for d in got] == [(s[0], 2), (s[1], 1)]
        assert await log.ack_leases("g", [(d.event.sequence, d.lease) for d in got]) == s
    finally:
        await log.close()
