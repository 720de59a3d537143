"""RedisEventLog: the scale-out EventLog, one Redis stream shared by every sidecar replica.

Several replicas behind one load balancer open the same Redis (same URL and prefix):
each append is one Lua script (store.redis.scripts) that dedupes, allocates sequences
from one counter, XADDs and advances status records atomically, so a Meta retry landing
on two replicas at once is stored once. Consumer groups are the stream's own groups
(XREADGROUP / XACK / XCLAIM) plus a zset of due times per group, all in Redis: the
subscribers of one group on different replicas share its events, and an event one
replica handed out and nobody acked is redelivered through any replica after its
deadline.

Group commit, client side (store.redis.append): appends issued while a script is in
flight are sent together as the next script (one round trip, one AOF write and fsync for
all of them), like the SQLite log's writer thread.

Durability: ``append`` returns once Redis executed the script. What that means depends on
the Redis server's settings, not on wahook: with ``appendonly yes`` and ``appendfsync
always`` Redis writes and fsyncs its AOF before it sends the replies of a batch of
commands, so a 200 to Meta means the events are on Redis's disk (as with SQLite's
synchronous=FULL); with ``appendfsync everysec`` (Redis's default fsync policy for the
AOF) a crash of the Redis host can lose the last second of them; without the AOF they
are only in Redis's memory until a snapshot. ``wait_replicas`` > 0 adds ``WAIT`` after
each append: it returns only once that many replicas acknowledged the write, and fails
(503: Meta retries, dedupe makes that safe) when they do not within ``wait_timeout``.

wait_for_append: appends through this instance wake waiters at once; appends through
other replicas are seen by one watcher task per instance (only while someone waits),
blocking in ``XREAD BLOCK`` on a dedicated connection, not one poll loop per stream
(how soon a waiter wakes: docs/architecture.md, "Why it is fast": Redis Streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from wahook.errors import (
    FailedPreconditionError,
    LogUnavailableError,
    NotFoundError,
)
from wahook.store import filters
from wahook.store.base import (
    DEADLINE_PASSED,
    DEFAULT_GROUP_SETTINGS,
    STREAM_ENDED,
    AppendResult,
    DeadLetter,
    EncodedBatch,
    EventFilter,
    GroupInfo,
    GroupSettings,
    Lease,
    StartPosition,
    StatusRecord,
    StatusTransition,
    decode_event,
)
from wahook.store.head import HeadWatch, check_appendable
from wahook.store.redis import scripts
from wahook.store.redis.append import AppendBatcher, mask_url
from wahook.v1 import account_pb2, event_pb2

T = TypeVar("T")

_PRUNE_CHUNK = 5000
# Entries one fetch may scan past a group's filter before it returns (a script blocks
# the Redis while it runs; a short batch then says how far it looked).
_MAX_SCAN = 10_000
_LIST_CHUNK = 500
_WATCH_BLOCK_MS = 5000


@dataclass(frozen=True)
class RedisMetrics:
    """Counters since open, for /metrics and tests."""

    commits: int  # append scripts run (one per client-side group commit)
    appended_events: int
    duplicate_events: int


def _chosen(sequences: Sequence[int] | None) -> list[int]:
    """The dead-letter scripts' arguments: 1 for all, else 0 and the sequences."""
    return [1] if sequences is None else [0, *(int(s) for s in sequences)]


def _count_in(group: str, n: int) -> int:
    if int(n) < 0:
        raise NotFoundError(f"consumer group {group!r} does not exist")
    return int(n)


class RedisEventLog:
    """The Redis Streams implementation of ``wahook.store.base.EventLog``. Use ``open``."""

    def __init__(
        self,
        client: aioredis.Redis,
        url: str,
        prefix: str,
        *,
        wait_replicas: int,
        wait_timeout: float,
        max_batch: int,
        forget_idle_consumers_after: float = 86400.0,
    ) -> None:
        self._client = client
        self._forget_idle_consumers_after = forget_idle_consumers_after
        self._url = url
        self._prefix = prefix
        self._stream = f"{prefix}:events"
        self._closed = False
        self._head = HeadWatch()
        self._waiters = 0
        self._watcher: asyncio.Task[None] | None = None
        reg = client.register_script
        self._batcher = AppendBatcher(
            client,
            reg(scripts.APPEND),
            prefix,
            where=f"Redis at {mask_url(url)}",
            wait_replicas=wait_replicas,
            wait_timeout_ms=int(wait_timeout * 1000),
            max_batch=max_batch,
            on_head=self._head.advance,
        )
        self._get_script = reg(scripts.GET)
        self._create_script = reg(scripts.CREATE_GROUP)
        self._info_script = reg(scripts.GROUP_INFO)
        self._fetch_script = reg(scripts.FETCH)
        self._release_script = reg(scripts.RELEASE)
        self._prune_script = reg(scripts.PRUNE)
        self._ack_leases_script = reg(scripts.ACK_LEASES)
        self._nack_leases_script = reg(scripts.NACK_LEASES)
        self._modify_script = reg(scripts.MODIFY_DEADLINES)
        self._dead_letter_script = reg(scripts.DEAD_LETTER)
        self._delete_script = reg(scripts.DELETE_GROUP)
        self._seek_script = reg(scripts.SEEK_GROUP)
        self._touch_script = reg(scripts.TOUCH_GROUPS)
        self._expire_script = reg(scripts.EXPIRE_GROUPS)
        self._list_dead_script = reg(scripts.LIST_DEAD_LETTERS)
        self._redeliver_dead_script = reg(scripts.REDELIVER_DEAD_LETTERS)
        self._discard_dead_script = reg(scripts.DISCARD_DEAD_LETTERS)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = "wahook",
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        max_batch: int = 256,
        socket_timeout: float = 10.0,
        forget_idle_consumers_after: float = 86400.0,
    ) -> RedisEventLog:
        """Connect to the Redis at ``url`` (``redis://[:password@]host:port/db``,
        ``rediss://`` for TLS) and use the keys under ``prefix``. ``wait_replicas``:
        replicas that must acknowledge each append (``WAIT``) within ``wait_timeout``
        seconds; 0 relies on the server's own persistence (see the module docstring).
        ``max_batch``: most appends sent in one script. ``forget_idle_consumers_after``:
        seconds after which ``prune`` deletes a group's consumer that holds no pending
        event (streams release theirs when they end; a replica that died could not)."""
        try:
            client = aioredis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        except ValueError as exc:
            raise LogUnavailableError(f"bad Redis URL {mask_url(url)}: {exc}") from None
        log = cls(
            client,
            url,
            prefix,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            max_batch=max_batch,
            forget_idle_consumers_after=forget_idle_consumers_after,
        )
        try:
            log._head.advance(int(await client.get(f"{prefix}:head") or 0))
        except RedisError as exc:
            await client.aclose()
            raise LogUnavailableError(
                f"cannot open the event log at {mask_url(url)}: {exc}"
            ) from None
        return log

    # -- plumbing ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogUnavailableError("event log is closed")

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        self._check_open()
        try:
            return await fn()
        except RedisError as exc:
            raise LogUnavailableError(f"Redis at {mask_url(self._url)}: {exc}") from None

    async def _run(self, script: AsyncScript, *args: bytes | str | int | float) -> Any:
        return await self._call(lambda: script(args=[self._prefix, *args]))

    def metrics(self) -> RedisMetrics:
        b = self._batcher
        return RedisMetrics(
            commits=b.commits, appended_events=b.appended, duplicate_events=b.duplicates
        )

    # -- EventLog ------------------------------------------------------------------------

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        """A future (see ``EventLog.append``); bad events raise here, before anything is
        queued. Appends queued while a script runs go together in the next one."""
        check_appendable(events)
        self._check_open()
        return self._batcher.submit(events)

    # -- reads ---------------------------------------------------------------------------

    async def get(self, event_id: str) -> event_pb2.Event | None:
        r = await self._run(self._get_script, event_id)
        return None if r is None else decode_event(int(r[0]), r[1])

    async def list_events(
        self, flt: EventFilter, after_sequence: int, until_sequence: int, limit: int
    ) -> list[event_pb2.Event]:
        out: list[event_pb2.Event] = []
        start = f"(0-{max(after_sequence, 0)}"
        end = f"0-{until_sequence}" if until_sequence > 0 else "+"
        matches = filters.entry_matcher(flt)
        while len(out) < limit:
            entries = await self._xrange(start, end)
            for entry_id, f in entries:
                if matches(f):
                    out.append(decode_event(int(entry_id.split(b"-")[1]), f[b"d"]))
                    if len(out) == limit:
                        break
            if len(entries) < _LIST_CHUNK:
                break
            start = "(" + entries[-1][0].decode()
        return out

    async def _xrange(self, start: str, end: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._call(
            lambda: self._client.xrange(self._stream, start, end, count=_LIST_CHUNK)  # type: ignore[arg-type, return-value]
        )
        return entries

    async def head_sequence(self) -> int:
        return int(await self._call(lambda: self._client.get(f"{self._prefix}:head")) or 0)

    async def message_status(self, message_id: str) -> StatusRecord | None:
        async def read() -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(f"{self._prefix}:st:{message_id}")
                pipe.hgetall(f"{self._prefix}:sh:{message_id}")
                rec, hist = await pipe.execute()
            return rec, hist

        rec, hist = await self._call(read)
        if not rec:
            return None
        history = []
        for _, raw in sorted(hist.items(), key=lambda kv: int(kv[0])):
            state, occurred, applied, event_id = json.loads(raw)
            history.append(
                StatusTransition(
                    state=int(state),
                    occurred_at=int(occurred),
                    event_id=str(event_id),
                    applied=bool(applied),
                )
            )
        errors = list(account_pb2.ValueErrors.FromString(rec[b"e"]).errors) if rec[b"e"] else []
        return StatusRecord(
            message_id=message_id,
            state=int(rec[b"s"]),
            state_time=int(rec[b"t"]),
            recipient_id=rec[b"r"].decode(),
            errors=errors,
            history=history,
        )

    # -- consumer groups -----------------------------------------------------------------

    async def create_group(
        self,
        name: str,
        flt: EventFilter,
        start: StartPosition,
        now: float,
        settings: GroupSettings = DEFAULT_GROUP_SETTINGS,
    ) -> GroupInfo:
        ok = await self._run(
            self._create_script,
            name,
            filters.canonical(flt),
            1 if flt.is_empty() else 0,
            start.kind,
            int(start.after_sequence),
            repr(float(start.from_time)),
            repr(float(now)),
            int(settings.max_delivery_attempts),
            repr(float(settings.expire_after_idle)),
        )
        if not int(ok):
            raise FailedPreconditionError(
                f"consumer group {name!r} exists with a different filter; "
                "send the same filter or an empty one"
            )
        info = await self.group_info(name)
        assert info is not None
        return info

    async def fetch(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> EncodedBatch:
        deadline = now + ack_deadline
        r = await self._run(
            self._fetch_script,
            group,
            consumer,
            max(int(max_count), 0),
            repr(float(now)),
            repr(deadline),
            _MAX_SCAN,
            DEADLINE_PASSED,
        )
        if int(r[0]) < 0:
            raise NotFoundError(f"consumer group {group!r} does not exist")
        self._head.advance(int(r[0]))
        rows = sorted((int(r[i]), int(r[i + 1]), bytes(r[i + 2])) for i in range(4, len(r), 3))
        return EncodedBatch(
            [row[0] for row in rows],
            [row[1] for row in rows],
            [row[2] for row in rows],
            deadline,
            int(r[1]),
            int(r[2]),
            int(r[3]),
        )

    async def ack_leases(self, group: str, leases: Sequence[Lease]) -> list[int]:
        if not leases:
            return []
        return await self._leased(self._ack_leases_script, group, leases)

    async def _leased(
        self, script: AsyncScript, group: str, leases: Sequence[Lease], *args: str | int
    ) -> list[int]:
        """Run a script over (sequence, lease) pairs; the sequences it acted on."""
        pairs = [str(int(x)) for lease in leases for x in lease]
        return [int(s) for s in await self._run(script, group, *args, *pairs)]

    async def nack_leases(
        self, group: str, leases: Sequence[Lease], redeliver_at: float, error: str
    ) -> list[int]:
        return await self._leased(
            self._nack_leases_script, group, leases, repr(float(redeliver_at)), error
        )

    async def modify_deadlines(
        self, group: str, leases: Sequence[Lease], deadline: float
    ) -> list[int]:
        return await self._leased(self._modify_script, group, leases, repr(float(deadline)))

    async def dead_letter(
        self, group: str, leases: Sequence[Lease], error: str, now: float
    ) -> list[int]:
        return await self._leased(self._dead_letter_script, group, leases, error, repr(float(now)))

    async def release(self, group: str, consumer: str, now: float) -> int:
        return int(
            await self._run(self._release_script, group, consumer, repr(float(now)), STREAM_ENDED)
        )

    async def group_info(self, group: str) -> GroupInfo | None:
        r = await self._run(self._info_script, group)
        if r is None:
            return None
        flt_text, created_at, position, pending, head, attempts, expire, active, dead = r
        position, head = int(position), int(head)
        return GroupInfo(
            name=group,
            filter=filters.parse_canonical(flt_text.decode()),
            delivered_sequence=position,
            pending_count=int(pending),
            lag=max(0, head - position),
            head_sequence=head,
            created_at=float(created_at),
            settings=GroupSettings(int(attempts), float(expire)),
            dead_letter_count=int(dead),
            last_active=float(active),
        )

    async def list_groups(self, after_name: str, limit: int) -> list[GroupInfo]:
        members: set[bytes] = await self._call(
            lambda: self._client.smembers(f"{self._prefix}:groups")  # type: ignore[arg-type, return-value]
        )
        names = sorted(n for n in (m.decode() for m in members) if n > after_name)
        out: list[GroupInfo] = []
        for name in names:
            if len(out) >= limit:
                break
            info = await self.group_info(name)
            if info is not None:  # deleted meanwhile
                out.append(info)
        return out

    async def delete_group(self, group: str) -> bool:
        return bool(int(await self._run(self._delete_script, group)))

    async def seek_group(self, group: str, position: StartPosition, now: float) -> GroupInfo:
        done = await self._run(
            self._seek_script,
            group,
            position.kind,
            int(position.after_sequence),
            repr(float(position.from_time)),
            repr(float(now)),
        )
        info = None if int(done) < 0 else await self.group_info(group)
        if info is None:
            raise NotFoundError(f"consumer group {group!r} does not exist")
        return info

    async def touch_groups(self, groups: Sequence[str], now: float) -> None:
        if groups:
            await self._run(self._touch_script, repr(float(now)), *groups)

    async def expire_groups(self, now: float) -> list[str]:
        return sorted(n.decode() for n in await self._run(self._expire_script, repr(float(now))))

    async def list_dead_letters(
        self, group: str, after_sequence: int, limit: int
    ) -> list[DeadLetter]:
        r = await self._run(self._list_dead_script, group, int(after_sequence), max(limit, 0))
        if r == -1:
            raise NotFoundError(f"consumer group {group!r} does not exist")
        return [
            DeadLetter(
                decode_event(int(r[i]), r[i + 4]), int(r[i + 1]), r[i + 3].decode(), float(r[i + 2])
            )
            for i in range(0, len(r), 5)
        ]

    async def redeliver_dead_letters(
        self, group: str, sequences: Sequence[int] | None, now: float
    ) -> int:
        n = await self._run(
            self._redeliver_dead_script, group, *_chosen(sequences), repr(float(now))
        )
        return _count_in(group, n)

    async def discard_dead_letters(self, group: str, sequences: Sequence[int] | None) -> int:
        n = await self._run(self._discard_dead_script, group, *_chosen(sequences))
        return _count_in(group, n)

    async def prune(self, older_than: float) -> int:
        # In chunks, each its own script: appends from every replica run in between
        # instead of waiting for one long script over a week of events.
        total = 0
        idle_ms = int(self._forget_idle_consumers_after * 1000)
        while True:
            deleted, more = await self._run(
                self._prune_script, repr(float(older_than)), _PRUNE_CHUNK, idle_ms
            )
            idle_ms = -1  # once per prune
            total += int(deleted)
            if not int(more):
                return total

    # -- waiting, health, close ----------------------------------------------------------

    async def wait_for_append(self, after_sequence: int, timeout: float) -> bool:  # noqa: ASYNC109 - the EventLog protocol's signature
        self._check_open()
        self._waiters += 1
        try:
            return await self._head.wait_past(
                after_sequence, timeout, closed=lambda: self._closed, before_wait=self._watching
            )
        finally:
            self._waiters -= 1

    def _watching(self) -> None:
        """Make sure the watcher of other replicas' appends runs while someone waits."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Follow appends made through other replicas while someone waits: XREAD BLOCK
        past the known head on a connection of its own, then read the counter."""
        conn = aioredis.Redis.from_url(
            self._url, socket_timeout=_WATCH_BLOCK_MS / 1000 + 5, single_connection_client=True
        )
        try:
            while self._waiters > 0 and not self._closed:
                try:
                    await conn.xread(
                        {self._stream: f"0-{self._head.head}"}, count=1, block=_WATCH_BLOCK_MS
                    )
                    head = int(await conn.get(f"{self._prefix}:head") or 0)
                except RedisError:
                    await asyncio.sleep(1.0)  # Redis away: waiters time out meanwhile
                    continue
                self._head.advance(head)
        finally:
            await conn.aclose()

    async def check_writable(self) -> None:
        # A real write: fails on a read-only replica, a full Redis (maxmemory) or one
        # whose persistence failed (MISCONF), like an append would.
        await self._call(lambda: self._client.set(f"{self._prefix}:writable", 1))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._head.close()  # wake waiters; they see the log closed
        await self._batcher.drain()  # finish pending writes: every append gets its answer
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
        await self._client.aclose()
