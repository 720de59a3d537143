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
once (one set-based write, see store.sqlite.events), which returns each append's result or
its own error (a refused append is not written, so it needs no rollback).

A failed BEGIN or COMMIT (disk full, lock held too long) fails every job of the batch
with ``LogUnavailableError``; nothing of it was committed.

The asyncio loop never touches the disk: it only puts jobs on a queue (never blocks,
unbounded) and is woken once per batch by ``call_soon_threadsafe``. It puts them there
once per loop iteration, all the jobs submitted in that iteration together: a job handed
over at once wakes the writer thread, which then takes the GIL at the loop's next
system call (the very next socket read) and commits that one job alone. And a writer
woken while the loop holds jobs submitted since (its iteration goes on) waits for their
hand-over, at most HAND_OVER_WAIT, and commits them with the rest: under load that is one
commit and fsync in place of two (docs/decisions/0026-uvloop-and-hand-over-wait.md).
Figures: docs/architecture.md, "Why it is fast" (the SQLite writer).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
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
# Longest the writer waits for jobs the loop has submitted but not yet handed over
# (normally microseconds: the rest of the loop's iteration; the bound is for safety).
HAND_OVER_WAIT = 0.002


def as_wahook_error(exc: BaseException) -> BaseException:
    """sqlite3 errors become LogUnavailableError; our own errors and bugs pass through."""
    if isinstance(exc, sqlite3.Error):
        return LogUnavailableError(f"event log unavailable: {exc}")
    return exc


class _Item:
    __slots__ = ("durable", "fn", "future", "payload")

    def __init__(
        self,
        fn: Job | None,
        future: asyncio.Future[Any],
        *,
        durable: bool,
        payload: Any = None,
    ) -> None:
        self.fn = fn  # None: an append, ``payload`` goes to append_many
        self.future = future
        self.durable = durable
        self.payload = payload


class _JobFailed(Exception):
    """A job raised while the batch ran straight: roll back and replay it job by job."""


class GroupCommitWriter:
    """One thread and one connection; see the module docstring.

    ``on_head(head)`` is called on the loop after every committed batch that contained an
    append, with the log's head sequence as that transaction saw it.
    ``append_many(conn, payloads)`` runs the payloads of every ``submit_append`` of a
    batch and returns, for each, its result or the exception its caller gets.
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
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._max_batch = max_batch
        self._read_head = read_head
        self._on_head = on_head
        self._append_many = append_many
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Jobs submitted during this loop iteration, handed to the thread by _hand_over.
        self._submitted: list[_Item] = []
        self._closed = False
        self._synchronous_full = True  # what schema.connect set
        # Read by /metrics and tests; written only by the writer thread.
        self.commits = 0
        self.jobs = 0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._run, name="wahook-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``fn`` for the next transaction; the future resolves after its COMMIT.

        ``durable``: the commit must reach the disk (fsync) before the future resolves.
        Otherwise it survives a crash of this process but may roll back on power loss.
        A job adds no events: appends go through ``submit_append``.
        """
        if self._closed:
            raise LogUnavailableError("event log is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._add(_Item(fn, future, durable=durable))
        return future

    def submit_append(self, payload: Any, *, durable: bool) -> asyncio.Future[Any]:
        """Queue an append: ``payload`` joins the batch's single ``append_many`` call."""
        if self._closed:
            raise LogUnavailableError("event log is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._add(_Item(None, future, durable=durable, payload=payload))
        return future

    def _add(self, item: _Item) -> None:
        if not self._submitted:
            self._loop.call_soon(self._hand_over)
        self._submitted.append(item)

    def _hand_over(self) -> None:
        """Every job submitted since the last hand-over, to the thread in one put."""
        if self._submitted:
            jobs, self._submitted = self._submitted, []
            self._queue.put(jobs)

    async def close(self) -> None:
        """Run every job already queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, list)
            jobs: list[_Item] = first
            stop = self._take_queued(jobs)
            if not stop and self._submitted:
                # The loop is mid-iteration with more jobs submitted: they are handed over
                # at its end, so wait for them rather than commit without them (one commit
                # and fsync fewer; under load this takes ~2.5% off a POST's CPU).
                try:
                    more = self._queue.get(timeout=HAND_OVER_WAIT)
                except queue.Empty:
                    pass
                else:
                    if more is _STOP:
                        stop = True
                    else:
                        assert isinstance(more, list)
                        jobs.extend(more)
                        stop = self._take_queued(jobs)
            # At most max_batch jobs a transaction, in the order they were submitted.
            for start in range(0, len(jobs), self._max_batch):
                self._run_guarded(jobs[start : start + self._max_batch])
        try:
            self._conn.close()
        except sqlite3.Error:  # pragma: no cover - closing a healthy connection
            _log.exception("closing the writer connection failed")

    def _take_queued(self, jobs: list[_Item]) -> bool:
        """Every job queued now, onto ``jobs``; True when the stop mark was among them."""
        while True:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            assert isinstance(more, list)
            jobs.extend(more)

    def _run_guarded(self, batch: list[_Item]) -> None:
        try:
            self._run_batch(batch)
        except Exception:  # a bug here must not kill the only writer: callers would hang
            _log.exception("event log writer: batch of %d jobs crashed", len(batch))
            self._abandon_transaction()
            self._fail(batch, sqlite3.OperationalError("writer error"))

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
            head = self._read_head(conn) if any(item.fn is None for item in batch) else None
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
