"""One Subscribe stream (a Session) and the Hub that knows every open stream.

A session runs two things at once: a task reading acks and nacks from the subscriber
(acks are coalesced into one commit at a time), and the delivery loop, which fetches
events while the stream's in-flight count is under ``max_in_flight`` and sends them in
responses of at most ``max_batch_size``, and otherwise sleeps until one of: an append
(EventLog.wait_for_append), an ack or nack freeing a full window, a nack delay in its
group ending (scheduled on the Hub), one of its own ack deadlines passing with events
unacked, a heartbeat being due, or shutdown. When the stream ends, however it ends, the
consumer's pending events are released so that another subscriber gets them at once
(with attempt + 1).

The session is the loop composing two small parts: the in-flight window (rpc.window: the
leases it holds, their deadlines, their bytes) and the pacer (rpc.pacer: the linger
between append-driven fetches, and pacing under overload).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from wahook.errors import InvalidArgumentError, LogUnavailableError
from wahook.rpc import convert
from wahook.rpc.convert import SubscribeSettings
from wahook.rpc.pacer import Pacer
from wahook.rpc.window import InFlightWindow
from wahook.store.base import EncodedBatch, EventLog, Lease
from wahook.v1 import service_pb2

_log = logging.getLogger(__name__)

# Redelivery wake-ups are rounded up to this granularity so that a burst of batches
# with nearly equal deadlines shares one timer (per group for nacks, per stream for ack
# deadlines).
_TIMER_GRANULARITY = 0.05
# The append watch's wait_for_append timeout; it waits again while streams sleep.
_WATCH_SECONDS = 3600.0
# Events fetched from the log at once (when the window allows), split into responses of
# max_batch_size.
_FETCH_AT_LEAST = 2048


@dataclass
class DeliveryStats:
    """Counters since start, for /metrics."""

    delivered: int = 0  # events sent to subscribers, redeliveries included
    redelivered: int = 0  # of which attempt > 1
    acked: int = 0  # sequences subscribers acked (as sent, known or not)
    nacked: int = 0  # sequences subscribers nacked
    streams_opened: int = 0
    dead_lettered: int = 0  # events moved to a group's dead letters (attempts, size)


class Hub:
    """Every open Session by group: wakes a group's sessions, counts them, ends them all."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.stats = DeliveryStats()
        self._clock = clock
        self._sessions: dict[str, set[Session]] = {}
        self._timers: dict[tuple[str, float], asyncio.TimerHandle] = {}
        self.closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Streams sleeping until an append passes their `after`, woken by ONE task for
        # all of them (see watch_append), and the highest head any fetch saw.
        self._waiting: dict[Session, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self._known_head = 0

    def add(self, session: Session) -> None:
        self._sessions.setdefault(session.settings.group, set()).add(session)
        self.stats.streams_opened += 1
        _log.info("subscriber %s joined group %s", session.consumer, session.settings.group)
        self._idle.clear()

    def remove(self, session: Session) -> None:
        _log.info("subscriber %s left group %s", session.consumer, session.settings.group)
        self._waiting.pop(session, None)
        group = self._sessions.get(session.settings.group)
        if group is not None:
            group.discard(session)
            if not group:
                del self._sessions[session.settings.group]
        if not self._sessions:
            self._idle.set()

    def connected(self, group: str) -> int:
        return len(self._sessions.get(group, ()))

    def groups(self) -> list[str]:
        """The groups with a stream open here."""
        return sorted(self._sessions)

    def forget_leases(self, group: str) -> None:
        """Every lease of the group ended (it was sought): its streams stop counting what
        they hold as in flight, and fetch from the new position at once."""
        for session in self._sessions.get(group, ()):
            session.forget_leases()

    def end_group(self, group: str, failure: Exception) -> None:
        """End every stream of the group with ``failure`` (the group was deleted)."""
        for session in self._sessions.get(group, ()):
            session.end(failure)

    def total(self) -> int:
        return sum(len(s) for s in self._sessions.values())

    def poke(self, group: str) -> None:
        for session in self._sessions.get(group, ()):
            session.wake()

    def schedule(self, group: str, at: float) -> None:
        """Wake the group's sessions at wall-clock time ``at`` (something becomes due)."""
        bucket = math.ceil(at / _TIMER_GRANULARITY) * _TIMER_GRANULARITY
        key = (group, bucket)
        if key in self._timers:
            return
        delay = max(0.0, bucket - self._clock())
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: tuple[str, float]) -> None:
        self._timers.pop(key, None)
        self.poke(key[0])

    def saw_head(self, head: int) -> None:
        """A fetch (or a heartbeat) read the log's head: appends up to it happened."""
        self._known_head = max(self._known_head, head)

    def watch_append(self, session: Session, after: int) -> bool:
        """Call ``session.appended()`` once an append passes ``after``; True instead if
        one already did (a stream's fetch saw a later head), then nothing is called.

        One task waits on the log for every sleeping stream: per commit one task wakes
        and calls the streams concerned. A wait_for_append task per stream and sleep
        cost every stream a task, a timeout, an Event waiter and, when woken otherwise,
        a cancellation, per fetch cycle.
        """
        if after < self._known_head:
            return True
        self._waiting[session] = after
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._watch_appends(session.log))
        return False

    def unwatch(self, session: Session) -> None:
        self._waiting.pop(session, None)

    async def _watch_appends(self, log: EventLog) -> None:
        try:
            while self._waiting:
                # Every waiting stream's `after` is the known head or above it, so the
                # lowest is the next one an append can pass.
                after = min(self._waiting.values())
                if not await log.wait_for_append(after, _WATCH_SECONDS):
                    continue
                self.saw_head(after + 1)
                for session, waits_after in list(self._waiting.items()):
                    if waits_after <= after:
                        del self._waiting[session]
                        session.appended()
        except Exception as exc:  # the log closed or failed: the waiting streams end
            for session in list(self._waiting):
                session.append_failed(exc)
            self._waiting.clear()
        finally:
            self._watch = None

    async def close(self, grace: float) -> None:
        """End every stream (they release their pending events) and wait for them."""
        self.closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._watch is not None:
            self._watch.cancel()
        for group in list(self._sessions):
            self.poke(group)
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            _log.warning("%d subscribe streams still open after %.1fs", self.total(), grace)


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


class Session:
    """The state of one Subscribe stream."""

    def __init__(
        self,
        log: EventLog,
        hub: Hub,
        settings: SubscribeSettings,
        *,
        clock: Callable[[], float],
        heartbeat_interval: float,
        max_response_bytes: int,
        linger: float = 0.0,
        max_bytes: int = 0,
    ) -> None:
        self.log = log
        self.hub = hub
        self.settings = settings
        # Unique per stream: release() on close must not touch another stream's events.
        self.consumer = f"{settings.consumer_name or 'subscriber'}#{secrets.token_hex(4)}"
        self._clock = clock
        self._heartbeat_interval = heartbeat_interval
        self._max_response_bytes = max_response_bytes
        self._pacer = Pacer(linger, clock())
        # wake(): a flag the delivery loop clears before it looks at the state, and the
        # future it sleeps on, if it sleeps (see _sleep).
        self._woken = False
        self._waiter: asyncio.Future[bool] | None = None
        # True while the delivery loop sleeps on a full window: only then does an ack
        # wake it. Waking it on every ack made a live stream fetch once per ack round
        # trip (fetch, send, ack, fetch, ...), ignoring the linger: with 4 groups reading
        # live that was most of what readers cost ingest.
        self._awaiting_room = False
        # Events handed to this stream and not acked, nacked or expired; it fetches only
        # while this has room (max_in_flight events, max_bytes bytes; 0: no byte bound).
        self.window = InFlightWindow(settings.max_in_flight, max_bytes)
        # The next fetch, started while catching up (see _fetch_ahead), and its count.
        self._ahead: asyncio.Task[EncodedBatch] | None = None
        self._ahead_want = 0
        # Wake-ups at this stream's ack deadlines (bucketed like the Hub's timers). Only
        # this stream's own: a deadline passing wakes it only if something it holds was
        # not acked by then. A wake-up of the whole group at every deadline cost each
        # stream an empty fetch per batch sent 30 s earlier, ~20 a second per live stream.
        self._deadline_timers: dict[float, asyncio.TimerHandle] = {}
        # Acks to commit: (sequence, lease, the ack id to confirm or None for an ack by
        # sequence, which is not confirmed).
        self._ack_buffer: list[tuple[int, int, str | None]] = []
        self._ack_commit: asyncio.Future[list[int]] | None = None  # the commit in progress
        self._ack_failure: BaseException | None = None
        # Lease operations confirmed and not sent yet (see SubscribeResponse.confirmation).
        self._confirmation = service_pb2.LeaseConfirmation()
        self._ended: Exception | None = None  # end(): the stream ends with this

    def forget_leases(self) -> None:
        self.window.clear()
        self.wake()

    def end(self, failure: Exception) -> None:
        """End the stream with ``failure`` (its group was deleted)."""
        self._ended = failure
        self.wake()

    def wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def read_acks(self, requests: AsyncIterator[service_pb2.SubscribeRequest]) -> None:
        """Apply every ack, nack and deadline change the subscriber sends, until it stops
        sending.

        Acks are not awaited one request at a time: they collect in a buffer, committed
        one commit at a time (the acks that arrive during a commit go in the next one),
        so a subscriber acking every event separately still gets its acks committed a
        batch per transaction instead of a transaction per ack.
        """
        async for request in requests:
            if request.HasField("options"):
                raise InvalidArgumentError("options: only the first request may carry options")
            if self._ack_failure is not None:
                raise self._ack_failure  # a failed ack (log unavailable) ends the stream
            if request.ack_sequences:
                convert.check_sequences(request.ack_sequences, "ack_sequences")
            if request.ack_ids or request.ack_sequences:
                self._buffer_acks(request)
                if self._ack_commit is None:
                    self._commit_acks()
            if request.nacks:
                await self._nack(request.nacks)
            if request.modify_deadlines:
                await self._modify_deadlines(request.modify_deadlines)
        await self._drain_acks()

    def _buffer_acks(self, request: service_pb2.SubscribeRequest) -> None:
        # Every ack id is checked before any is buffered: a bad one ends the stream
        # with nothing of its request applied.
        named = [
            (*convert.parse_ack_id(text, f"ack_ids[{i}]"), text)
            for i, text in enumerate(request.ack_ids)
        ]
        self.hub.stats.acked += len(named) + len(request.ack_sequences)
        self._ack_buffer += named
        for seq in request.ack_sequences:  # by sequence: only what this stream holds
            lease = self.window.lease(seq)
            if lease is not None:
                self._ack_buffer.append((seq, lease, None))

    def _commit_acks(self) -> None:
        # A task with a done callback per commit, not a flusher task woken by an Event
        # that awaits each commit under a lock through asyncio.shield: the same commits,
        # about half the asyncio objects and loop steps per ack.
        acks, self._ack_buffer = self._ack_buffer, []
        leases = [(seq, lease) for seq, lease, _ in acks]
        commit = asyncio.ensure_future(self.log.ack_leases(self.settings.group, leases))
        commit.add_done_callback(partial(self._acked, acks))
        self._ack_commit = commit

    def _acked(
        self, acks: list[tuple[int, int, str | None]], commit: asyncio.Future[list[int]]
    ) -> None:
        self._ack_commit = None
        failure = None if commit.cancelled() else commit.exception()
        if commit.cancelled() or failure is not None:
            self._ack_failure = failure or LogUnavailableError("ack cancelled")
            return
        acked = set(commit.result())
        # A sequence acked under two leases in one commit took the newest (leases only
        # grow), so only that ack id counts as acked.
        newest: dict[int, int] = {}
        for seq, lease, _ in acks:
            if seq in acked and lease > newest.get(seq, -1):
                newest[seq] = lease
        confirmed = False
        for seq, lease, text in acks:
            took = newest.get(seq) == lease
            if took and self.window.lease(seq) == lease:
                self.window.forget(seq)
            if text is not None:
                confirmed = True
                (self._confirmation.acked_ids if took else self._confirmation.expired_ids).append(
                    text
                )
        self.window.compact()
        if self._awaiting_room or confirmed:
            self.wake()
        if self._ack_buffer:
            self._commit_acks()

    async def _drain_acks(self) -> None:
        """Commit the acks received so far and wait for it (stream end). Nothing cancels
        a commit: one in progress finishes even when this wait is cancelled."""
        while self._ack_commit is not None or self._ack_buffer:
            if self._ack_commit is None:
                self._commit_acks()
            commit = self._ack_commit
            assert commit is not None
            await asyncio.wait([commit])
            failure = None if commit.cancelled() else commit.exception()
            if failure is not None:
                raise failure

    def _named(self, ack_id: str, sequence: int, name: str) -> tuple[Lease, str] | None:
        """The lease a nack or deadline change names, with its ack id ('' when it names a
        sequence: then only what this stream holds, else None)."""
        if ack_id:
            return convert.parse_ack_id(ack_id, f"{name}.ack_id"), ack_id
        lease = self.window.lease(sequence)
        return None if lease is None else ((sequence, lease), "")

    def _confirm(self, named: list[tuple[Lease, str]], done: list[int], took: Any) -> None:
        """Confirm the ack ids in ``named``: into ``took`` when their sequence is in
        ``done``, else as expired; and forget what this stream no longer holds."""
        changed = set(done)
        for (seq, _), text in named:
            if text:
                (took if seq in changed else self._confirmation.expired_ids).append(text)
        if named:
            self.wake()

    async def _nack(self, nacks: Sequence[service_pb2.Nack]) -> None:
        group = self.settings.group
        now = self._clock()
        by_time: dict[tuple[float, str], list[tuple[Lease, str]]] = {}
        for i, nack in enumerate(nacks):
            convert.check_sequence(nack.sequence, f"nacks[{i}].sequence")
            delay = convert.seconds_of(nack.delay, f"nacks[{i}].delay")
            if delay < 0:
                raise InvalidArgumentError(f"nacks[{i}].delay must not be negative")
            error = convert.parse_nack_error(nack.error, f"nacks[{i}].error")
            named = self._named(nack.ack_id, nack.sequence, f"nacks[{i}]")
            if named is not None:
                by_time.setdefault((now + delay, error), []).append(named)
        self.hub.stats.nacked += len(nacks)
        for (at, error), these in by_time.items():
            done = await self.log.nack_leases(group, [n[0] for n in these], at, error)
            self.window.forget_if_held(n[0] for n in these)
            self._confirm(these, done, self._confirmation.nacked_ids)
            self.hub.schedule(group, at)
        self.hub.poke(group)
        self.wake()

    async def _modify_deadlines(self, changes: Sequence[service_pb2.ModifyDeadline]) -> None:
        now = self._clock()
        by_deadline: dict[float, list[tuple[Lease, str]]] = {}
        for i, change in enumerate(changes):
            name = f"modify_deadlines[{i}]"
            if not change.ack_id:
                raise InvalidArgumentError(f"{name}.ack_id is required")
            seconds = convert.seconds_of(change.deadline, f"{name}.deadline")
            if not (convert.MIN_ACK_DEADLINE <= seconds <= convert.MAX_ACK_DEADLINE):
                raise InvalidArgumentError(
                    f"{name}.deadline must be between 1s and 1h (got {seconds:g}s)"
                )
            named = self._named(change.ack_id, 0, name)
            assert named is not None
            by_deadline.setdefault(now + seconds, []).append(named)
        for deadline, these in by_deadline.items():
            done = await self.log.modify_deadlines(
                self.settings.group, [n[0] for n in these], deadline
            )
            changed = set(done)
            if self.window.move((n[0] for n in these if n[0][0] in changed), deadline):
                self._schedule_deadline(deadline)
            self._confirm(these, done, self._confirmation.modified_ids)

    async def deliveries(
        self, reader: asyncio.Task[None]
    ) -> AsyncIterator[service_pb2.SubscribeResponse | bytes]:
        """The responses of this stream, until shutdown or until the subscriber hangs up."""
        s = self.settings
        last_sent = self._clock()
        head = 0
        reader.add_done_callback(self._reader_done)
        try:
            while not self.hub.closing:
                if reader.done():
                    reader.result()  # the subscriber's error (a bad request) ends the stream
                    # The subscriber half-closed: it cannot ack, so stop delivering, but
                    # first confirm the acks it sent before (the reader committed them).
                    confirming = self._confirming(head)
                    if confirming is not None:
                        yield confirming
                    return
                # Cleared before the state is looked at: a wake-up from here on is not
                # lost, and one that changed nothing (say, an ack of an unknown sequence
                # while the window is full) cannot make the loop spin.
                self._woken = False
                confirming = self._confirming(head)
                if confirming is not None:
                    yield confirming
                    last_sent = self._clock()
                now = self._clock()
                room = self.window.room(now)
                if self._ahead is not None or room > 0:
                    want, batch = await self._next_batch(room, now)
                    head = batch.head
                    fetched = len(batch)
                    batch = await self._drop_oversized(batch)
                    if batch:
                        self._track(batch)
                        if fetched == want:
                            self._fetch_ahead()
                        for response in convert.encode_responses(
                            batch,
                            server_time=self._clock(),
                            head=max(head, batch.sequences[-1]),
                            max_count=s.max_batch_size,
                            max_bytes=self._max_response_bytes,
                        ):
                            yield response
                        last_sent = self._clock()
                    if fetched == want:
                        continue  # more may be waiting: fetch again at once
                    # A short fetch saw everything up to `head`: sleep until an append
                    # passes it (or another reason to wake), with no second, empty fetch.
                wait = max(0.0, last_sent + self._heartbeat_interval - self._clock())
                # With a full window appends are no reason to wake; only acks, deadlines.
                # (None: no append watch, and an ack freeing room wakes it.)
                if wait > 0 and await self._sleep(head if room > 0 else None, wait):
                    continue
                if self._clock() - last_sent >= self._heartbeat_interval:
                    head, beat = await self._heartbeat()
                    yield beat
                    last_sent = self._clock()
        finally:
            self._cancel_deadline_timers()
            if self._ahead is not None:
                # Its events, if the fetch already ran, are pending for this consumer:
                # close() releases them with everything else the stream held.
                self._ahead.cancel()

    def _fetch_size(self, room: int) -> int:
        # One fetch may fill several responses: a writer round trip per 256 events would
        # cap catch-up long before gRPC does.
        return min(room, max(self.settings.max_batch_size, _FETCH_AT_LEAST))

    async def _next_batch(self, room: int, now: float) -> tuple[int, EncodedBatch]:
        """The next batch and the count it was asked for: the one fetched ahead, if any,
        else a fetch of what the window has room for."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            return self._ahead_want, await ahead
        want = self._fetch_size(room)
        return want, await self._fetch(want, now)

    def _fetch_ahead(self) -> None:
        """Start the next fetch now (a full fetch, so more may be waiting): it runs in the
        writer thread while this batch's responses are encoded and sent (SQLite releases
        the GIL), about a third faster catch-up."""
        now = self._clock()
        self._ahead_want = self._fetch_size(self.window.room(now))
        if self._ahead_want > 0:
            self._ahead = asyncio.create_task(self._fetch(self._ahead_want, now))

    def _confirming(self, head: int) -> service_pb2.SubscribeResponse | None:
        """A response with the confirmations not sent yet, if any; raises the failure
        the stream was ended with (see end())."""
        if self._ended is not None:
            raise self._ended
        if not self._confirmation.ListFields():
            return None
        confirmation, self._confirmation = self._confirmation, service_pb2.LeaseConfirmation()
        return convert.confirmation_response(confirmation, self._clock(), head)

    async def _sleep(self, after: int | None, limit: float) -> bool:
        """Wait for a reason to fetch again: an append past ``after`` (unless None), a
        wake-up (the subscriber leaving is one). False when ``limit`` passed first.

        One future, settled by whichever comes first: wake() sets it, a timer handle
        times it out, and the Hub's append watch calls appended(), which sets it, or,
        within ``linger`` of the last fetch, schedules that for when the linger ends.
        The session wakes once per cycle. Two tasks (wake, append) under asyncio.wait
        plus a separate linger sleep woke it up to three times and cancelled a task per
        cycle.
        """
        if self._woken:
            return True
        self._pacer.sleeping(self._clock())
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        self._awaiting_room = after is None
        timer = loop.call_later(limit, _settle, waiter, False)
        if after is not None and self.hub.watch_append(self, after):
            self.appended()
        try:
            return await waiter
        finally:
            self._pacer.woke(self._clock())
            self._waiter = None
            self._awaiting_room = False
            timer.cancel()
            if after is not None:
                self.hub.unwatch(self)

    def appended(self) -> None:
        """An append passed what this stream saw (called by the Hub's append watch)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        # Within the linger (or the pace) of the last fetch, the fetch waits for its end.
        delay = self._pacer.append_delay(self._clock())
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, _settle, waiter, True)
        else:
            waiter.set_result(True)

    def append_failed(self, failure: Exception) -> None:
        """Waiting for appends failed (the log closed): the stream ends with it."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)

    async def _heartbeat(self) -> tuple[int, service_pb2.SubscribeResponse]:
        head = await self.log.head_sequence()
        self.hub.saw_head(head)
        now = convert.timestamp(self._clock())
        return head, service_pb2.SubscribeResponse(server_time=now, head_sequence=head)

    def _reader_done(self, reader: asyncio.Task[None]) -> None:
        # The subscriber left or sent something wrong: the loop looks (the callback is
        # left in place; after the stream it wakes nothing).
        self.wake()

    async def _fetch(self, count: int, now: float) -> EncodedBatch:
        """Up to ``count`` deliveries, and a head read no later than the fetch: when the
        fetch comes back short, nothing up to that head is left for this group."""
        s = self.settings
        self._pacer.fetched(now)
        batch = await self.log.fetch(s.group, self.consumer, count, s.ack_deadline, now)
        self.hub.saw_head(batch.head)
        return batch

    async def _drop_oversized(self, batch: EncodedBatch) -> EncodedBatch:
        """The batch without the events too large for the subscriber to receive: those
        go to the group's dead letters, with the reason (they would fail the stream on
        every delivery and never be acked)."""
        self.hub.stats.dead_lettered += batch.dead_lettered
        limit = self.settings.max_receive_bytes - convert.response_overhead()
        if not batch or max(map(len, batch.events)) <= limit:
            return batch
        keep = [i for i, data in enumerate(batch.events) if len(data) <= limit]
        too_large = [i for i in range(len(batch)) if len(batch.events[i]) > limit]
        for i in too_large:
            error = (
                f"the event ({len(batch.events[i])} bytes) does not fit in the subscriber's"
                f" max_receive_bytes ({self.settings.max_receive_bytes}); raise the client's"
                " maximum receive message size and send it as options.max_receive_bytes"
            )
            moved = await self.log.dead_letter(
                self.settings.group, [(batch.sequences[i], batch.lease)], error, self._clock()
            )
            self.hub.stats.dead_lettered += len(moved)
            _log.warning(
                "group %s: event %d dead-lettered: %s",
                self.settings.group,
                batch.sequences[i],
                error,
            )
        return EncodedBatch(
            [batch.sequences[i] for i in keep],
            [batch.attempts[i] for i in keep],
            [batch.events[i] for i in keep],
            batch.deadline,
            batch.head,
            batch.lease,
        )

    def _track(self, batch: EncodedBatch) -> None:
        """Count a fetched batch as in flight on this stream, due at its deadline."""
        stats = self.hub.stats
        stats.delivered += len(batch)
        self.window.add(batch.sequences, batch.lease, batch.deadline, batch.events)
        stats.redelivered += len(batch) - batch.attempts.count(1)
        self._schedule_deadline(batch.deadline)

    def _schedule_deadline(self, at: float) -> None:
        bucket = math.ceil(at / _TIMER_GRANULARITY) * _TIMER_GRANULARITY
        if bucket not in self._deadline_timers:
            delay = max(0.0, bucket - self._clock())
            loop = asyncio.get_running_loop()
            self._deadline_timers[bucket] = loop.call_later(delay, self._deadline_passed, bucket)

    def _cancel_deadline_timers(self) -> None:
        for timer in self._deadline_timers.values():
            timer.cancel()
        self._deadline_timers.clear()

    def _deadline_passed(self, bucket: float) -> None:
        early = bucket - self._clock()
        if early > 0:  # the loop's timer ran ahead of the wall clock: wait for it
            loop = asyncio.get_running_loop()
            self._deadline_timers[bucket] = loop.call_later(early, self._deadline_passed, bucket)
            return
        del self._deadline_timers[bucket]
        held = len(self.window)
        if self.window.count(self._clock()) < held:
            self.wake()  # some expired unacked: fetch them again (and have room)

    async def close(self) -> None:
        """The stream ended: commit the acks still buffered, then hand this consumer's
        pending events back to its group."""
        try:
            await self._drain_acks()
            released = await self.log.release(self.settings.group, self.consumer, self._clock())
        except Exception:
            _log.exception("closing %s's stream: acks or release failed", self.consumer)
            return
        if released:
            self.hub.poke(self.settings.group)
