"""The Redis event log's appends: client-side group commit of the APPEND script.

Appends issued while a script is in flight queue up and go together as the next script:
one round trip and, with ``appendfsync always``, one AOF write and fsync for all of them,
as the SQLite log's writer thread shares one commit (figures: docs/architecture.md,
"Why it is fast": Redis Streams). With ``wait_replicas`` the script and a ``WAIT`` go in one
pipeline, on one connection, so WAIT covers exactly that write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from wahook.errors import InvalidArgumentError, LogUnavailableError
from wahook.store import filters
from wahook.store.base import AppendResult
from wahook.store.redis.scripts import APPEND_ARGS_PER_EVENT
from wahook.v1 import account_pb2, event_pb2, status_pb2

Arg = bytes | str | int | float


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs (never raises: a URL too
    broken to parse still must not show its password)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


class _PendingAppend:
    __slots__ = ("args", "future", "size")

    def __init__(self, args: list[Arg], size: int) -> None:
        self.args = args
        self.size = size
        self.future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()


def event_args(event: event_pb2.Event) -> list[Arg]:
    """The APPEND script arguments of one event (see lua/append.lua)."""
    received = event.received_time
    mid, state, occurred, rcpt, errors = "", 0, 0, "", b""
    if event.WhichOneof("payload") == "status":
        st = event.status
        mid, state, occurred, rcpt = st.id, st.state, event.occurred_time.seconds, st.recipient_id
        if st.state == status_pb2.DELIVERY_STATE_FAILED and st.errors:
            errors = account_pb2.ValueErrors(errors=st.errors).SerializeToString()
    return [
        event.id,
        event.dedupe_key,
        event.SerializeToString(),
        repr(received.seconds + received.nanos / 1e9),
        mid,
        int(state),
        int(occurred),
        rcpt,
        errors,
        *map(filters.redis_arg, filters.values_of(event)),
    ]


class AppendBatcher:
    """Queues appends and runs them as APPEND scripts, one batch at a time."""

    def __init__(
        self,
        client: aioredis.Redis,
        script: AsyncScript,
        prefix: str,
        *,
        where: str,
        wait_replicas: int,
        wait_timeout_ms: int,
        max_batch: int,
        on_head: Callable[[int], None],
    ) -> None:
        self._client = client
        self._append_script = script
        self._prefix = prefix
        self._where = where  # for errors: the URL with its password masked
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._max_batch = max_batch
        self._on_head = on_head
        self._queue: list[_PendingAppend] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self.commits = 0  # scripts run
        self.appended = 0  # events stored
        self.duplicates = 0  # events not stored again

    def submit(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        args: list[Arg] = [len(events)]
        for event in events:
            args.extend(event_args(event))
        pending = _PendingAppend(args, len(events))
        self._queue.append(pending)
        if not self._flushing:
            self._flushing = True
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        return pending.future

    async def drain(self) -> None:
        """Wait until every queued append has its answer."""
        if self._flush_task is not None:
            with contextlib.suppress(Exception):
                await self._flush_task

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = (
                    self._queue[: self._max_batch],
                    self._queue[self._max_batch :],
                )
                await self._commit(batch)
        finally:
            self._flushing = False

    async def _commit(self, batch: list[_PendingAppend]) -> None:
        args: list[Arg] = [self._prefix, len(batch)]
        for p in batch:
            args.extend(p.args)
        try:
            if self._wait_replicas > 0:
                async with self._client.pipeline(transaction=False) as pipe:
                    await self._append_script(args=args, client=pipe)
                    pipe.wait(self._wait_replicas, self._wait_timeout_ms)
                    results, acked = await pipe.execute()
                self._check_replicas(int(acked))
            else:
                results = await self._append_script(args=args)
        except (RedisError, LogUnavailableError) as exc:
            error = (
                exc
                if isinstance(exc, LogUnavailableError)
                else LogUnavailableError(f"{self._where}: {exc}")
            )
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        except BaseException as exc:  # cancelled by close(): nobody must wait for ever
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(LogUnavailableError(f"append interrupted: {exc!r}"))
            raise
        self.commits += 1
        try:
            self._answer(batch, results)
        except Exception as exc:  # a malformed reply: no append may wait for ever
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(LogUnavailableError(f"bad reply from Redis: {exc!r}"))

    def _answer(self, batch: list[_PendingAppend], results: Any) -> None:
        head = 0
        for p, r in zip(batch, results, strict=True):
            if p.future.done():  # the caller gave up waiting; the events are stored anyway
                continue
            code = int(r[0])
            if code < 0:
                index = int(r[1])
                event_id = p.args[1 + APPEND_ARGS_PER_EVENT * index]
                p.future.set_exception(
                    InvalidArgumentError(
                        f"events[{index}].id {event_id!r} is stored for another dedupe_key"
                    )
                )
                continue
            seqs = [int(s) for s in r[1:]]
            self.appended += code
            self.duplicates += p.size - code
            if seqs:
                head = max(head, *seqs)
            p.future.set_result(AppendResult(sequences=seqs, new_count=code))
        self._on_head(head)

    def _check_replicas(self, acked: int) -> None:
        if acked < self._wait_replicas:
            raise LogUnavailableError(
                f"only {acked} of {self._wait_replicas} Redis replicas acknowledged"
                f" the append within {self._wait_timeout_ms} ms"
            )
