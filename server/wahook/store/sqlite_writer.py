"""The SQLite log's single writer thread with group commit.

Every write (append, fetch, ack, nack, release, create_group, prune) is a *job*: a
function of the connection. Coroutines queue jobs and await a future; the writer thread
takes everything queued at that moment (up to ``max_batch`` jobs) and runs it in ONE
``BEGIN IMMEDIATE ... COMMIT`` transaction, so 100 concurrent webhook POSTs pay for a
handful of fsyncs instead of 100.

The jobs of a batch run straight, one after the other, with no SAVEPOINT around each:
a savepoint and its RELEASE are two statements per job, which cost the writer more than
a small append itself. Jobs almost never fail, so the failure pays instead: when a job
raises, the whole transaction is rolled back and the batch is replayed job by job, each
in its own SAVEPOINT, so the failing job is rolled back alone, its caller gets the
error and its neighbours still commit (once: the first attempt was rolled back). Jobs
are pure functions of the connection, so running one twice is safe.

Appends are not ordinary jobs: every append of a batch is handed to ``append_many`` at
once (one set-based write, see store.sqlite_ops), which returns each append's result or
its own error (a refused append is not written, so it needs no rollback).

A failed BEGIN or COMMIT (disk full, lock held too long) fails every job of the batch
with ``LogUnavailableError``; nothing of it was committed.

No commit checkpoints the WAL: WalCheckpointer does it on a thread of its own, and the
writer only finishes its last few frames between batches (see store.sqlite_schema).

The asyncio loop never touches the disk: it only puts jobs on a queue.Queue (never
blocks, unbounded) and is woken once per batch by ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from wahook.errors import LogUnavailableError

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
# Every append of a batch at once: one result (or the error of that append alone) each.
AppendMany = Callable[[sqlite3.Connection, list[Any]], list[Any]]
Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

_log = logging.getLogger(__name__)

_STOP = object()


def as_wahook_error(exc: BaseException) -> BaseException:
    """sqlite3 errors become LogUnavailableError; our own errors and bugs pass through."""
    if isinstance(exc, sqlite3.Error):
        return LogUnavailableError(f"event log unavailable: {exc}")
    return exc


class _Item:
    __slots__ = ("appends", "durable", "fn", "future", "payload")

    def __init__(
        self,
        fn: Job | None,
        future: asyncio.Future[Any],
        *,
        appends: bool,
        durable: bool,
        payload: Any = None,
    ) -> None:
        self.fn = fn  # None: an append, ``payload`` goes to append_many
        self.future = future
        self.appends = appends
        self.durable = durable
        self.payload = payload


class _JobFailed(Exception):
    """A job raised while the batch ran straight: roll back and replay it job by job."""


class GroupCommitWriter:
    """One thread and one connection; see the module docstring.

    ``on_head(head)`` is called on the loop after every committed batch that contained an
    append job, with the log's head sequence as that transaction saw it.
    ``append_many(conn, payloads)`` runs the payloads of every ``submit_append`` of a
    batch and returns, for each, its result or the exception its caller gets.
    ``checkpoint_conn``: a connection for a WalCheckpointer that this writer starts and
    stops (``conn`` must then have ``wal_autocheckpoint = 0``, see store.sqlite_schema).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batch: int,
        read_head: Callable[[sqlite3.Connection], int],
        on_head: Callable[[int], None],
        append_many: AppendMany,
        checkpoint_conn: sqlite3.Connection | None = None,
        checkpoint_interval: float = 0.1,
        checkpoint_limit_frames: int = 16384,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._max_batch = max_batch
        self._read_head = read_head
        self._on_head = on_head
        self._append_many = append_many
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._synchronous_full = True  # what sqlite_schema.connect set
        # Read by /metrics and tests; written only by the writer thread.
        self.commits = 0
        self.jobs = 0
        self.largest_batch = 0
        self.checkpointer = (
            None
            if checkpoint_conn is None
            else WalCheckpointer(
                checkpoint_conn,
                lambda: self.commits,
                interval=checkpoint_interval,
                limit_frames=checkpoint_limit_frames,
            )
        )
        self._thread = threading.Thread(target=self._run, name="wahook-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        appends: bool = False,
        durable: bool = False,
    ) -> asyncio.Future[T]:
        """Queue ``fn`` for the next transaction; the future resolves after its COMMIT.

        ``durable``: the commit must reach the disk (fsync) before the future resolves.
        Otherwise it survives a crash of this process but may roll back on power loss.
        ``appends``: the job adds events (waiters of wait_for_append are woken).
        """
        if self._closed:
            raise LogUnavailableError("event log is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Item(fn, future, appends=appends, durable=durable))
        return future

    def submit_append(self, payload: Any, *, durable: bool) -> asyncio.Future[Any]:
        """Queue an append: ``payload`` joins the batch's single ``append_many`` call."""
        if self._closed:
            raise LogUnavailableError("event log is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Item(None, future, appends=True, durable=durable, payload=payload))
        return future

    async def close(self) -> None:
        """Run every job already queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        if self.checkpointer is not None:
            await asyncio.to_thread(self.checkpointer.close)

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Item)
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Item)
                batch.append(item)
            try:
                self._run_batch(batch)
            except Exception:  # a bug here must not kill the only writer: callers would hang
                _log.exception("event log writer: batch of %d jobs crashed", len(batch))
                self._abandon_transaction()
                self._fail(batch, sqlite3.OperationalError("writer error"))
            if self.checkpointer is not None and self.checkpointer.catch_up:
                # After the batch's futures were handed to the loop: nobody waits on it.
                self.checkpointer.catch_up_on(self._conn)
        try:
            self._conn.close()
        except sqlite3.Error:  # pragma: no cover - closing a healthy connection
            _log.exception("closing the writer connection failed")

    def _abandon_transaction(self) -> None:
        # A transaction left open would make every later BEGIN fail.
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                _log.warning("rollback of an abandoned batch failed", exc_info=True)

    def _begin(self, batch: list[_Item]) -> bool:
        conn = self._conn
        try:
            durable = any(item.durable for item in batch)
            if durable != self._synchronous_full:
                # Between transactions the level can change: FULL fsyncs the WAL at
                # COMMIT (and with it every earlier NORMAL commit); NORMAL does not.
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synchronous_full = durable
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._fail(batch, exc)
            return False
        return True

    def _run_batch(self, batch: list[_Item]) -> None:
        # A caller that gave up (cancelled) does not want its job: skipping a fetch
        # avoids handing out events nobody will receive.
        batch = [item for item in batch if not item.future.cancelled()]
        if not batch or not self._begin(batch):
            return
        conn = self._conn
        try:
            try:
                outcomes = self._run_straight(batch)
            except _JobFailed:
                conn.execute("ROLLBACK")
                if not self._begin(batch):
                    return
                outcomes = self._run_isolated(batch)
            head = self._read_head(conn) if any(item.appends for item in batch) else None
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abandon_transaction()
            self._fail(batch, exc)
            return
        self.commits += 1
        self.jobs += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        self._call_soon(outcomes, head)

    def _run_straight(self, batch: list[_Item]) -> list[Outcome]:
        """Every job in the one transaction; _JobFailed if any raised (roll back all)."""
        conn = self._conn
        outcomes: list[Outcome] = []
        appended: list[Any] | None = None
        try:
            for item in batch:
                if item.fn is not None:
                    outcomes.append((item.future, item.fn(conn), None))
                    continue
                if appended is None:
                    # At the first append: every append of the batch, in batch order.
                    payloads = [i.payload for i in batch if i.fn is None]
                    appended = self._append_many(conn, payloads)[::-1]
                result = appended.pop()
                if isinstance(result, BaseException):
                    outcomes.append((item.future, None, result))
                else:
                    outcomes.append((item.future, result, None))
        except Exception as exc:
            if not conn.in_transaction and isinstance(exc, sqlite3.Error):
                # SQLite rolled the whole transaction back itself (disk full, I/O
                # error): nothing of the batch stays, every job fails.
                raise
            raise _JobFailed from exc
        return outcomes

    def _run_isolated(self, batch: list[_Item]) -> list[Outcome]:
        """The replay after a failure: each job in its own SAVEPOINT, errors its own."""
        conn = self._conn
        outcomes: list[Outcome] = []
        for item in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = self._run_one(item)
            except Exception as exc:  # handed to the job's caller
                if not conn.in_transaction and isinstance(exc, sqlite3.Error):
                    raise  # as in _run_straight: the transaction is gone
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((item.future, None, as_wahook_error(exc)))
            else:
                conn.execute("RELEASE job")
                outcomes.append((item.future, result, None))
        return outcomes

    def _run_one(self, item: _Item) -> Any:
        if item.fn is not None:
            return item.fn(self._conn)
        (result,) = self._append_many(self._conn, [item.payload])
        if isinstance(result, BaseException):
            raise result
        return result

    def _call_soon(self, outcomes: list[Outcome], head: int | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve, outcomes, head)
        except RuntimeError:  # the loop closed without closing the log: nobody is waiting
            _log.warning("event loop closed before %d write results were delivered", len(outcomes))

    def _fail(self, batch: list[_Item], exc: sqlite3.Error) -> None:
        _log.error("event log batch of %d jobs failed: %s", len(batch), exc)
        error = as_wahook_error(exc)
        outcomes: list[Outcome] = [(item.future, None, error) for item in batch]
        self._call_soon(outcomes, None)

    def _resolve(self, outcomes: list[Outcome], head: int | None) -> None:
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        if head is not None:
            self._on_head(head)


class WalCheckpointer:
    """Copies the WAL back into the database file on a thread and connection of its own,
    so no append's commit waits for that copy (see store.sqlite_schema).

    Every ``interval`` seconds, if the writer committed since the last round, it runs
    ``PRAGMA wal_checkpoint(PASSIVE)``: that takes no lock, so the writer and the readers
    go on while it copies pages and fsyncs the database file.

    The WAL only starts over from its beginning (instead of growing, which makes every
    commit's fsync dearer) when a write transaction begins with every frame copied. Under
    steady load the writer is mid-batch when the copy ends and commits more frames, so
    the round sets ``catch_up`` and the writer, between two batches, runs one more
    PASSIVE checkpoint itself: only the frames committed meanwhile (a few) and the fsync,
    after which its next transaction restarts the WAL. If the WAL still grows past
    ``limit_frames`` (a reader keeps an old snapshot) a RESTART checkpoint takes the
    writer lock and waits for the readers, at most ``_RESTART_WAIT`` seconds (its
    connection's busy timeout) and at most once every ``_RESTART_EVERY`` seconds: a
    rare, bounded stall of the writer instead of a WAL without bound.
    """

    _RESTART_WAIT = 0.2
    _RESTART_EVERY = 1.0

    def __init__(
        self,
        conn: sqlite3.Connection,
        commits: Callable[[], int],
        *,
        interval: float,
        limit_frames: int,
    ) -> None:
        self._conn = conn
        self._commits = commits
        self._interval = interval
        self._limit_frames = limit_frames
        self._next_restart = 0.0
        conn.execute(f"PRAGMA busy_timeout = {int(self._RESTART_WAIT * 1000)}")
        self._stop = threading.Event()
        self.catch_up = False  # set here, cleared by the writer thread
        # Read by tests; written only by the checkpointer thread.
        self.checkpoints = 0
        self.restarts = 0
        self._thread = threading.Thread(
            target=self._run, name="wahook-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (after its current round) and close its connection."""
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        seen = self._commits()
        while not self._stop.wait(self._interval):
            commits = self._commits()
            if commits == seen:
                continue
            seen = commits
            try:
                self.checkpoint()
            except sqlite3.Error:  # e.g. disk full: the next round tries again
                _log.warning("WAL checkpoint failed", exc_info=True)

    def checkpoint(self) -> tuple[int, int]:
        """One round; returns the WAL's frames and how many are in the database file."""
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        if frames > self._limit_frames and time.monotonic() >= self._next_restart:
            _log.info("WAL at %d frames: RESTART checkpoint", frames)
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            self.restarts += 1
            self._next_restart = time.monotonic() + self._RESTART_EVERY
        elif not busy and frames > 0:
            self.catch_up = True
        return frames, copied

    def catch_up_on(self, conn: sqlite3.Connection) -> None:
        """Run by the writer between batches when ``catch_up`` is set (see above)."""
        self.catch_up = False
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:  # pragma: no cover - the next round tries again
            _log.warning("WAL checkpoint failed", exc_info=True)
