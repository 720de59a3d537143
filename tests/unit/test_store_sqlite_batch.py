"""The SQLite writer's group commit as a batch: jobs run straight (no per-job savepoint),
a failure rolls the batch back and replays it job by job, and the appends of a batch are
one set-based write (dedupe across concurrent appends, per-append refusals, statuses
applied in order within the batch)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from test_rpc_support import message, status
from wahook.errors import FailedPreconditionError, InvalidArgumentError, LogUnavailableError
from wahook.store.base import EventFilter, StartPosition
from wahook.store.sqlite import SqliteEventLog
from wahook.store.sqlite import writer as writer_module
from wahook.v1 import status_pb2

S = status_pb2


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    opened = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        yield opened
    finally:
        await opened.close()


class Batch:
    """What one group commit did: its callers' results, its statements, its commits."""

    def __init__(self, results: list[Any], statements: list[str], commits: int) -> None:
        self.results = results
        self.statements = statements
        self.commits = commits


async def in_one_batch(log: SqliteEventLog, *calls: Callable[[], Awaitable[Any]]) -> Batch:
    """Make ``calls`` so their jobs are certainly queued together: the writer is held in
    a job of its own until every call has queued, then takes them as one batch. (Made
    here, not by the caller: ``log.append`` queues its job when called.)"""
    gate, inside = threading.Event(), threading.Event()
    statements: list[str] = []

    def hold(conn: sqlite3.Connection) -> None:
        inside.set()
        gate.wait(30)
        conn.set_trace_callback(statements.append)

    before = log.metrics().commits
    held = asyncio.ensure_future(log._write(hold))
    async with asyncio.timeout(30):  # the writer is inside the holding job now
        while not inside.is_set():  # noqa: ASYNC110 - a thread's flag
            await asyncio.sleep(0.005)
    tasks = [asyncio.ensure_future(call()) for call in calls]
    await asyncio.sleep(0)  # every task ran up to its await: its job is submitted
    await asyncio.sleep(0)  # and the next loop iteration handed them to the writer thread
    assert not log._writer._submitted
    gate.set()
    await held
    results = await asyncio.gather(*tasks, return_exceptions=True)
    log._writer._conn.set_trace_callback(None)
    # Drop the holding job's own COMMIT.
    assert statements[0] == "COMMIT"
    return Batch(results, statements[1:], log.metrics().commits - before - 1)


async def test_a_batch_runs_without_savepoints_in_one_transaction(log: SqliteEventLog) -> None:
    await log.create_group("g", EventFilter(), StartPosition(), 1.0)
    batch = await in_one_batch(
        log,
        *(partial(log.append, [message(n)]) for n in range(1, 21)),
        partial(log.ack_leases, "g", [(1, 1)]),
    )
    assert [r.sequences for r in batch.results[:20]] == [[n] for n in range(1, 21)]
    assert batch.commits == 1
    statements = batch.statements
    assert not [s for s in statements if "SAVEPOINT" in s or "ROLLBACK" in s]
    assert statements.count("BEGIN IMMEDIATE") == statements.count("COMMIT") == 1
    # The twenty appends look their ids up once, not once each.
    assert len([s for s in statements if "FROM events WHERE id IN" in s]) == 1


async def test_a_failing_job_is_replayed_alone_and_its_neighbours_commit_once(
    log: SqliteEventLog,
) -> None:
    await log.create_group("g", EventFilter(), StartPosition(), 1.0)
    conflicting = partial(
        log.create_group, "g", EventFilter(waba_ids=frozenset({"1"})), StartPosition(), 1.0
    )
    batch = await in_one_batch(
        log,
        lambda: log.append([message(1), status(2, "wamid.OUT1", S.DELIVERY_STATE_SENT, 10)]),
        conflicting,
        lambda: log.append([message(3)]),
    )
    first, refused, last = batch.results
    assert isinstance(refused, FailedPreconditionError)
    assert [first.sequences, last.sequences] == [[1, 2], [3]]
    assert batch.commits == 1
    # The straight run was rolled back, then the replay isolated each job.
    assert batch.statements.count("ROLLBACK") == 1
    assert batch.statements.count("SAVEPOINT job") == 3
    assert batch.statements.count("ROLLBACK TO job") == 1
    # Stored once: no second copy, no second history row, no sequence skipped.
    stored = await log.list_events(EventFilter(), 0, 0, 100)
    assert [e.sequence for e in stored] == [1, 2, 3]
    record = await log.message_status("wamid.OUT1")
    assert record is not None
    assert len(record.history) == 1
    assert (await log.head_sequence()) == 3


async def test_concurrent_appends_of_one_new_event_store_it_once(log: SqliteEventLog) -> None:
    # Two concurrent POSTs of the same retry land in one batch.
    batch = await in_one_batch(
        log,
        lambda: log.append([message(1), message(2)]),
        lambda: log.append([message(2), message(1)]),
        lambda: log.append([message(3), message(3)]),
    )
    first, second, third = batch.results
    assert batch.commits == 1
    assert (first.sequences, first.new_count) == ([1, 2], 2)
    assert (second.sequences, second.new_count) == ([2, 1], 0)
    assert (third.sequences, third.new_count) == ([3, 3], 1)
    m = log.metrics()
    assert (m.appended_events, m.duplicate_events) == (3, 3)
    again = await log.append([message(2), message(4)])
    assert (again.sequences, again.new_count) == ([2, 4], 1)


async def test_an_id_clash_refuses_that_append_alone(log: SqliteEventLog) -> None:
    await log.append([message(1)])
    stored_clash = message(2)
    stored_clash.id = message(1).id  # stored for another dedupe key
    batch_clash = message(4)
    batch_clash.id = message(3).id  # added earlier in the same batch for another key
    inner_clash = message(6)
    inner_clash.id = message(5).id  # added earlier in the same append for another key
    batch = await in_one_batch(
        log,
        lambda: log.append([message(3)]),
        lambda: log.append([message(7), stored_clash]),
        lambda: log.append([batch_clash]),
        lambda: log.append([message(5), inner_clash]),
        lambda: log.append([message(8)]),
    )
    ok, stored_refused, batch_refused, inner_refused, last = batch.results
    assert isinstance(stored_refused, InvalidArgumentError)
    assert "events[1].id" in str(stored_refused)
    assert isinstance(batch_refused, InvalidArgumentError)
    assert "events[0].id" in str(batch_refused)
    assert isinstance(inner_refused, InvalidArgumentError)
    assert "events[1].id" in str(inner_refused)
    assert [ok.sequences, last.sequences] == [[2], [3]]
    assert batch.commits == 1
    assert not [s for s in batch.statements if "SAVEPOINT" in s]  # refusals need no rollback
    for refused in (message(7), message(4), message(5), message(6)):
        assert await log.get(refused.id) is None
    assert await log.head_sequence() == 3


async def test_statuses_of_one_message_in_one_batch_apply_in_order(log: SqliteEventLog) -> None:
    wamid = "wamid.OUT9"
    await log.append([status(1, wamid, S.DELIVERY_STATE_SENT, 100)])
    batch = await in_one_batch(
        log,
        lambda: log.append([status(2, wamid, S.DELIVERY_STATE_READ, 300)]),
        lambda: log.append([status(3, wamid, S.DELIVERY_STATE_DELIVERED, 200)]),
        lambda: log.append([status(4, "wamid.OTHER", S.DELIVERY_STATE_DELIVERED, 50)]),
    )
    assert batch.commits == 1
    record = await log.message_status(wamid)
    assert record is not None
    assert (record.state, record.state_time) == (S.DELIVERY_STATE_READ, 300)
    assert [(h.state, h.applied) for h in record.history] == [
        (S.DELIVERY_STATE_SENT, True),
        (S.DELIVERY_STATE_READ, True),
        (S.DELIVERY_STATE_DELIVERED, False),
    ]
    other = await log.message_status("wamid.OTHER")
    assert other is not None
    assert other.state == S.DELIVERY_STATE_DELIVERED


async def test_a_first_status_that_does_not_advance_creates_an_empty_record(
    log: SqliteEventLog,
) -> None:
    await log.append([status(1, "wamid.OUT5", S.DELIVERY_STATE_UNSPECIFIED, 100)])
    record = await log.message_status("wamid.OUT5")
    assert record is not None
    assert (record.state, record.state_time, record.recipient_id) == (0, 0, "15550105678")
    assert [h.applied for h in record.history] == [False]


async def test_an_append_failing_in_sqlite_is_replayed_alone(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = log._writer
    real = writer._append_many
    poisoned = message(2).id

    def append_many(conn: sqlite3.Connection, payloads: list[object]) -> list[object]:
        if any(row.event_id == poisoned for rows in payloads for row in rows):  # type: ignore[attr-defined]
            raise sqlite3.IntegrityError("poisoned")
        return real(conn, payloads)

    monkeypatch.setattr(writer, "_append_many", append_many)
    batch = await in_one_batch(
        log,
        lambda: log.append([message(1)]),
        lambda: log.append([message(2)]),
        lambda: log.append([message(3)]),
    )
    first, failed, last = batch.results
    assert [first.sequences, last.sequences] == [[1], [2]]
    assert isinstance(failed, LogUnavailableError)
    assert "poisoned" in str(failed)
    assert batch.commits == 1
    assert batch.statements.count("ROLLBACK TO job") == 1


async def test_appends_of_one_loop_iteration_share_one_commit(log: SqliteEventLog) -> None:
    before = log.metrics().commits
    futures = []
    for n in range(1, 11):
        futures.append(log.append([message(n)]))
        # The loop's socket reads between two requests release the GIL like this: a job
        # handed to the writer thread at once would be committed here, alone.
        time.sleep(0.002)  # noqa: ASYNC251 - blocking on purpose, as explained above
    results = await asyncio.gather(*futures)
    assert [r.sequences for r in results] == [[n] for n in range(1, 11)]
    assert log.metrics().commits - before == 1
    assert log.metrics().appended_events == 10


async def test_jobs_the_loop_has_yet_to_hand_over_join_the_commit(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer, woken while the loop holds more submitted jobs (its iteration goes on),
    waits for their hand-over and commits them with the first: one commit, not two."""
    monkeypatch.setattr(writer_module, "HAND_OVER_WAIT", 60.0)  # no clock in the outcome
    writer = log._writer
    before = log.metrics().commits
    first = log.append([message(1)])
    writer._hand_over()  # handed over at once, as at the end of a loop iteration
    second = log.append([message(2)])  # submitted, handed over at the next iteration
    async with asyncio.timeout(30):
        # Block the loop (its iteration goes on) until the writer took the first job.
        while not writer._queue.empty():
            time.sleep(0.001)  # noqa: ASYNC251 - the loop must not turn meanwhile
        results = await asyncio.gather(first, second)
    assert [r.sequences for r in results] == [[1], [2]]
    assert log.metrics().commits - before == 1


async def test_a_lone_job_is_committed_without_waiting(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With nothing more submitted the writer does not wait: were it to, this would hang.
    monkeypatch.setattr(writer_module, "HAND_OVER_WAIT", 600.0)
    async with asyncio.timeout(30):
        result = await log.append([message(1)])
    assert result.sequences == [1]


async def test_a_version_3_file_keys_status_history_by_event_sequence(tmp_path: Path) -> None:
    """Version 4 gives each history row its event's sequence so retention prunes them
    together; the migration drops the rows (and records) of events pruned before it."""
    path = tmp_path / "events.sqlite3"
    log = await SqliteEventLog.open(path)
    kept = "wamid.OUT7"
    s = (
        await log.append(
            [
                message(1),
                status(2, kept, S.DELIVERY_STATE_SENT, 100),
                status(3, kept, S.DELIVERY_STATE_READ, 300),
            ]
        )
    ).sequences
    await log.close()
    with sqlite3.connect(path) as old:  # back to version 3: own rowids, an orphan row
        old.execute("UPDATE status_history SET rowid = rowid + 100")
        old.execute(
            "INSERT INTO status_history (rowid, message_id, state, occurred_at, event_id,"
            " applied) VALUES (50, 'wamid.GONE', 1, 50, 'evt_pruned_long_ago', 1)"
        )
        old.execute(
            "INSERT INTO message_status (message_id, state, state_time, recipient_id)"
            " VALUES ('wamid.GONE', 1, 50, '15550105678')"
        )
        old.execute("PRAGMA user_version = 3")
    log = await SqliteEventLog.open(path)
    try:
        assert await log.message_status("wamid.GONE") is None
        record = await log.message_status(kept)
        assert record is not None
        assert [(h.state, h.occurred_at) for h in record.history] == [
            (S.DELIVERY_STATE_SENT, 100),
            (S.DELIVERY_STATE_READ, 300),
        ]
        assert await log.prune(1_700_000_003.0) == 2  # the message and the SENT status
        record = await log.message_status(kept)
        assert record is not None
        assert [h.state for h in record.history] == [S.DELIVERY_STATE_READ]
    finally:
        await log.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 5
        assert check.execute("SELECT rowid FROM status_history").fetchall() == [(s[2],)]
