"""SqliteEventLog: the embedded EventLog, one SQLite file under the data directory.

Writes go through one writer thread with group commit (store.sqlite.writer); reads run on
a small pool of reader threads, each with its own connection. WAL lets those readers see
the last committed state without waiting for the writer, so a long ListEvents never delays
a webhook's commit, and the asyncio loop never waits on the disk. Durability settings
and the schema are in store.sqlite.schema; the SQL in store.sqlite.events (events)
store.sqlite.groups (consumer groups) and store.sqlite.lifecycle (deleting, seeking,
expiring groups, dead letters).

Durability: appends (and group creation) commit with synchronous=FULL, so a returned
append survives kill -9 and power loss (``open(..., synchronous="normal")`` trades the
power-loss guarantee for latency; see ``open``). Consumer-group bookkeeping (fetch, ack, nack,
release, prune) commits with synchronous=NORMAL: it survives kill -9 (the OS has the WAL
pages) and reaches the disk with the next append's fsync; a power cut in between can
only roll back recent group changes, which means some events are delivered again -- the
at-least-once contract -- never that an event is lost. So a subscriber catching up
costs no fsync at all (with FULL, each fetch and each ack would cost one).

The log belongs to the event loop that opened it. Several processes (or several
instances) may open the same file: SQLite's lock serialises their writers and the unique
dedupe key keeps one copy of each event. wait_for_append() is woken only by appends made
through this instance; callers poll with a timeout for anything else.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from wahook.errors import InvalidArgumentError, LogUnavailableError
from wahook.store.base import (
    DEFAULT_GROUP_SETTINGS,
    AppendResult,
    DeadLetter,
    EncodedBatch,
    EventFilter,
    GroupInfo,
    GroupSettings,
    Lease,
    StartPosition,
    StatusRecord,
)
from wahook.store.head import HeadWatch, check_appendable
from wahook.store.sqlite import events as ops
from wahook.store.sqlite import groups, lifecycle
from wahook.store.sqlite import status as sqlite_status
from wahook.store.sqlite.schema import connect, initialise
from wahook.store.sqlite.writer import GroupCommitWriter, as_wahook_error
from wahook.v1 import event_pb2

T = TypeVar("T")

_PRUNE_CHUNK = 5000


@dataclass(frozen=True)
class SqliteMetrics:
    """Counters since open, for /metrics and tests."""

    commits: int  # transactions committed by the writer (one per group-commit batch)
    write_jobs: int  # write operations committed (appends, fetches, acks, ...)
    largest_batch: int  # most write operations committed in one transaction
    appended_events: int  # events stored (duplicates excluded)
    duplicate_events: int  # events not stored because their dedupe key was present


class SqliteEventLog:
    """The SQLite implementation of ``wahook.store.base.EventLog``. Use ``open``."""

    def __init__(
        self,
        path: Path,
        loop: asyncio.AbstractEventLoop,
        *,
        writer_conn: sqlite3.Connection,
        reader_conns: list[sqlite3.Connection],
        head: int,
        max_batch: int,
        durable_appends: bool = True,
    ) -> None:
        self.path = path
        self._loop = loop
        self._head = HeadWatch(head)
        self._closed = False
        self._durable_appends = durable_appends
        self._appended = 0
        self._duplicates = 0
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._reader_conns = reader_conns
        for conn in reader_conns:
            self._readers.put(conn)
        self._pool = ThreadPoolExecutor(
            max_workers=len(reader_conns), thread_name_prefix="wahook-sqlite-read"
        )
        self._writer = GroupCommitWriter(
            writer_conn,
            loop,
            max_batch=max_batch,
            read_head=ops.head,
            on_head=self._head.advance,
            append_many=ops.append_many,
        )

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = 5.0,
        max_batch: int = 1024,
        readers: int = 2,
        synchronous: Literal["full", "normal"] = "full",
    ) -> SqliteEventLog:
        """Open (creating it and its directory if needed) the log file at ``path``.

        ``busy_timeout``: seconds a write waits for another process's lock before it fails
        with LogUnavailableError. ``max_batch``: most write operations committed in one
        transaction. ``readers``: reader threads (and connections) for queries.
        ``synchronous``: "full" (the default) fsyncs every append before it returns, so
        it survives power loss; "normal" skips that fsync: appends still survive kill -9
        and crashes of this process, but a power cut may lose the last ones (why FULL is
        the default: docs/decisions/0001-200-after-durable.md).
        """
        loop = asyncio.get_running_loop()

        def open_sync() -> tuple[sqlite3.Connection, list[sqlite3.Connection], int]:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = connect(path, busy_timeout=busy_timeout)
            try:
                initialise(writer)
                head = ops.head(writer)
                reader_conns = [
                    connect(path, busy_timeout=busy_timeout, readonly=True)
                    for _ in range(max(1, readers))
                ]
            except BaseException:
                writer.close()
                raise
            return writer, reader_conns, head

        try:
            writer, reader_conns, head = await asyncio.to_thread(open_sync)
        except (sqlite3.Error, OSError) as exc:
            raise LogUnavailableError(f"cannot open the event log at {path}: {exc}") from exc
        return cls(
            path,
            loop,
            writer_conn=writer,
            reader_conns=reader_conns,
            head=head,
            max_batch=max_batch,
            durable_appends=synchronous == "full",
        )

    # -- plumbing ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogUnavailableError("event log is closed")

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        self._check_open()
        return await self._writer.submit(fn, durable=durable)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()

        def run() -> T:
            conn = self._readers.get()
            try:
                # One read transaction: every statement of fn sees the same snapshot.
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            finally:
                self._readers.put(conn)

        try:
            return await self._loop.run_in_executor(self._pool, run)
        except sqlite3.Error as exc:
            raise as_wahook_error(exc) from exc
        except RuntimeError as exc:
            if self._closed:  # the pool shut down under us
                raise LogUnavailableError("event log is closed") from exc
            raise

    def metrics(self) -> SqliteMetrics:
        return SqliteMetrics(
            commits=self._writer.commits,
            write_jobs=self._writer.jobs,
            largest_batch=self._writer.largest_batch,
            appended_events=self._appended,
            duplicate_events=self._duplicates,
        )

    # -- EventLog ------------------------------------------------------------------------

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        """A future, not a coroutine: the front waits for it with a callback, no task
        (see ``EventLog.append``). Bad events raise here, before anything is queued."""
        check_appendable(events)
        return self.append_rows([ops.prepare(event) for event in events])

    def append_rows(self, rows: list[ops.Row]) -> asyncio.Future[AppendResult]:
        """``append`` of events already checked and prepared (``events.prepare``), by a
        ``--workers`` front process that did that work on its own core
        (wahook.workers.handoff)."""
        self._check_open()
        # Not a job of its own: every append of a group commit is one set-based write.
        future: asyncio.Future[AppendResult] = self._writer.submit_append(
            rows, durable=self._durable_appends
        )
        future.add_done_callback(partial(self._count, len(rows)))
        return future

    def append_rows_many(
        self, appends: list[list[ops.Row]]
    ) -> asyncio.Future[list[AppendResult | InvalidArgumentError]]:
        """Several appends of prepared rows as one writer job with one future: their
        results in order (a refused append's InvalidArgumentError among them). For a
        ``--workers`` front's frames of one read (wahook.workers.handoff): one future, one
        callback and one hand-over for them all instead of one each; the job runs inside
        the group commit's transaction like the appends of ``append``, and wakes the
        subscribers' ``wait_for_append`` itself."""
        self._check_open()

        def job(conn: sqlite3.Connection) -> tuple[list[AppendResult | InvalidArgumentError], int]:
            return ops.append_many(conn, appends), ops.head(conn)

        done: asyncio.Future[list[AppendResult | InvalidArgumentError]] = self._loop.create_future()
        self._writer.submit(job, durable=self._durable_appends).add_done_callback(
            partial(self._appended_many, done)
        )
        return done

    def _appended_many(
        self,
        done: asyncio.Future[list[AppendResult | InvalidArgumentError]],
        ran: asyncio.Future[tuple[list[AppendResult | InvalidArgumentError], int]],
    ) -> None:
        if ran.cancelled():
            done.cancel()
            return
        exc = ran.exception()
        if exc is not None:
            done.set_exception(exc)
            return
        results, head = ran.result()
        self._head.advance(head)
        for result in results:
            if isinstance(result, AppendResult):
                self._appended += result.new_count
                self._duplicates += len(result.sequences) - result.new_count
        done.set_result(results)

    def _count(self, rows: int, future: asyncio.Future[AppendResult]) -> None:
        if not future.cancelled() and future.exception() is None:
            new = future.result().new_count
            self._appended += new
            self._duplicates += rows - new

    async def get(self, event_id: str) -> event_pb2.Event | None:
        return await self._read(lambda conn: ops.get(conn, event_id))

    async def list_events(
        self, flt: EventFilter, after_sequence: int, until_sequence: int, limit: int
    ) -> list[event_pb2.Event]:
        return await self._read(
            lambda conn: ops.list_events(conn, flt, after_sequence, until_sequence, limit)
        )

    async def head_sequence(self) -> int:
        return await self._read(ops.head)

    async def message_status(self, message_id: str) -> StatusRecord | None:
        return await self._read(lambda conn: sqlite_status.message_status(conn, message_id))

    async def create_group(
        self,
        name: str,
        flt: EventFilter,
        start: StartPosition,
        now: float,
        settings: GroupSettings = DEFAULT_GROUP_SETTINGS,
    ) -> GroupInfo:
        return await self._write(
            lambda conn: groups.create_group(conn, name, flt, start, now, settings=settings),
            durable=self._durable_appends,
        )

    async def fetch(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> EncodedBatch:
        return await self._write(
            lambda conn: groups.fetch(
                conn, group, consumer, max_count=max_count, ack_deadline=ack_deadline, now=now
            )
        )

    async def ack_leases(self, group: str, leases: Sequence[Lease]) -> list[int]:
        held = list(leases)
        if not held:
            return []
        return await self._write(lambda conn: groups.ack_leases(conn, group, held))

    async def nack_leases(
        self, group: str, leases: Sequence[Lease], redeliver_at: float, error: str
    ) -> list[int]:
        held = list(leases)
        return await self._write(
            lambda conn: groups.nack_leases(conn, group, held, redeliver_at, error)
        )

    async def modify_deadlines(
        self, group: str, leases: Sequence[Lease], deadline: float
    ) -> list[int]:
        held = list(leases)
        return await self._write(lambda conn: groups.modify_deadlines(conn, group, held, deadline))

    async def dead_letter(
        self, group: str, leases: Sequence[Lease], error: str, now: float
    ) -> list[int]:
        held = list(leases)
        return await self._write(lambda conn: groups.dead_letter(conn, group, held, error, now))

    async def release(self, group: str, consumer: str, now: float) -> int:
        return await self._write(lambda conn: groups.release(conn, group, consumer, now))

    async def group_info(self, group: str) -> GroupInfo | None:
        return await self._read(lambda conn: groups.group_info(conn, group))

    async def list_groups(self, after_name: str, limit: int) -> list[GroupInfo]:
        return await self._read(lambda conn: groups.list_groups(conn, after_name, limit))

    async def delete_group(self, group: str) -> bool:
        return await self._write(lambda conn: lifecycle.delete_group(conn, group))

    async def seek_group(self, group: str, position: StartPosition, now: float) -> GroupInfo:
        return await self._write(lambda conn: lifecycle.seek_group(conn, group, position, now))

    async def touch_groups(self, groups: Sequence[str], now: float) -> None:
        names = list(groups)
        if names:
            await self._write(lambda conn: lifecycle.touch_groups(conn, names, now))

    async def expire_groups(self, now: float) -> list[str]:
        return await self._write(lambda conn: lifecycle.expire_groups(conn, now))

    async def list_dead_letters(
        self, group: str, after_sequence: int, limit: int
    ) -> list[DeadLetter]:
        return await self._read(
            lambda conn: lifecycle.list_dead_letters(conn, group, after_sequence, limit)
        )

    async def redeliver_dead_letters(
        self, group: str, sequences: Sequence[int] | None, now: float
    ) -> int:
        seqs = None if sequences is None else list(sequences)
        return await self._write(
            lambda conn: lifecycle.redeliver_dead_letters(conn, group, seqs, now)
        )

    async def discard_dead_letters(self, group: str, sequences: Sequence[int] | None) -> int:
        seqs = None if sequences is None else list(sequences)
        return await self._write(lambda conn: lifecycle.discard_dead_letters(conn, group, seqs))

    async def prune(self, older_than: float) -> int:
        # In chunks, each its own write job: appends queued meanwhile commit in between
        # instead of waiting for one long DELETE of a week of events.
        total = 0
        while True:
            deleted = await self._write(lambda conn: ops.prune(conn, older_than, _PRUNE_CHUNK))
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total

    async def wait_for_append(self, after_sequence: int, timeout: float) -> bool:  # noqa: ASYNC109 - the EventLog protocol's signature
        self._check_open()
        return await self._head.wait_past(after_sequence, timeout, closed=lambda: self._closed)

    async def check_writable(self) -> None:
        # An empty job still takes the write lock with BEGIN IMMEDIATE and commits.
        await self._write(lambda conn: None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._head.close()  # wake waiters; they see the log closed
        await self._writer.close()
        self._pool.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
