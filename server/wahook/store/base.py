"""The EventLog protocol: what every storage backend (SQLite, Redis Streams) must do.

One contract test suite (tests/contract/) runs against every implementation. Times
are Unix seconds as floats passed in by the caller (``now``), so backends and tests
never read the clock themselves where a decision depends on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from wahook.v1 import common_pb2, event_pb2

StartKind = Literal["earliest", "latest", "after_sequence", "from_time"]


@dataclass(frozen=True)
class StartPosition:
    """Where a new consumer group begins: before the oldest event, at the head, after a
    sequence, or at the first event received at or after a time."""

    kind: StartKind = "earliest"
    after_sequence: int = 0
    from_time: float = 0.0


@dataclass(frozen=True)
class EventFilter:
    """Selects events; each non-empty set must match, an empty filter matches all.

    ``event_types`` holds ``wahook.v1.EventType`` values; ``message_types`` holds
    Meta's type strings and only matches message and message-echo events.
    """

    event_types: frozenset[int] = frozenset()
    message_types: frozenset[str] = frozenset()
    phone_number_ids: frozenset[str] = frozenset()
    waba_ids: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        return not (
            self.event_types or self.message_types or self.phone_number_ids or self.waba_ids
        )


@dataclass(frozen=True)
class AppendResult:
    """What an append did. ``sequences[i]`` is the stored sequence of ``events[i]``
    (the existing one when the event was a duplicate)."""

    sequences: list[int]
    new_count: int


DEFAULT_MAX_DELIVERY_ATTEMPTS = 10
# The error a dead letter gets when its last attempt just timed out, and the one a
# pending event gets when the stream holding it ends.
DEADLINE_PASSED = "not acked within its ack deadline"
STREAM_ENDED = "the subscriber's stream ended before it acked"
DEFAULT_EXPIRE_AFTER_IDLE = 7 * 24 * 3600.0

# (sequence, lease): one delivery of one event to a group. Every fetch hands its events
# out under a lease number of its own, unique within the group, so an ack naming an
# earlier delivery of the same event (whose lease ended) matches nothing.
Lease = tuple[int, int]


@dataclass(frozen=True)
class GroupSettings:
    """What a new consumer group is created with. ``expire_after_idle`` 0: never."""

    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    expire_after_idle: float = DEFAULT_EXPIRE_AFTER_IDLE


DEFAULT_GROUP_SETTINGS = GroupSettings()


@dataclass(frozen=True)
class Delivery:
    """One event handed to one consumer of a group, under ``lease``."""

    event: event_pb2.Event
    attempt: int
    deadline: float
    lease: int = 0


def decode_event(sequence: int, data: bytes) -> event_pb2.Event:
    """A stored event's bytes parsed, with its sequence (stored bytes may lack it)."""
    event = event_pb2.Event.FromString(data)
    event.sequence = sequence
    return event


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """What ``EventLog.fetch`` returns: the stored event bytes, never parsed (a Subscribe
    stream only forwards them: docs/decisions/0011-subscribe-sends-stored-bytes.md), in
    columns rather than one object per event (every delivery of one fetch shares its
    deadline, and an object per event, built in the SQLite writer thread, was a
    measurable part of a catch-up's CPU: docs/architecture.md, "Why it is fast":
    delivery). Delivery ``i`` is ``sequences[i]``, its ``attempts[i]`` and ``events[i]``,
    a serialised ``wahook.v1.Event`` whose ``sequence`` field may be unset
    (``sequences[i]`` is the truth); sequences ascend. ``deadline`` is
    the ack deadline of them all. ``head`` is the log's head sequence as the fetch saw
    it, so a caller knows, without another query, that nothing after ``head`` was
    considered and can wait for appends past it. ``lease`` names this fetch's deliveries
    (see ``base.Lease``); ``dead_lettered`` counts the due events the fetch moved to the
    dead letters instead (their attempts were spent)."""

    sequences: list[int]
    attempts: list[int]
    events: list[bytes]
    deadline: float
    head: int
    lease: int = 0
    dead_lettered: int = 0

    def __len__(self) -> int:
        return len(self.sequences)

    def deliveries(self) -> list[Delivery]:
        """The batch as one Delivery per event, each event parsed (tests and tools)."""
        return [
            Delivery(decode_event(seq, data), attempt, self.deadline, self.lease)
            for seq, attempt, data in zip(self.sequences, self.attempts, self.events, strict=True)
        ]


@dataclass(frozen=True)
class GroupInfo:
    """A consumer group's durable state."""

    name: str
    filter: EventFilter
    delivered_sequence: int
    pending_count: int
    lag: int
    head_sequence: int
    created_at: float
    settings: GroupSettings = DEFAULT_GROUP_SETTINGS
    dead_letter_count: int = 0
    last_active: float = 0.0


@dataclass(frozen=True)
class DeadLetter:
    """An event a group gave up delivering: how often it was delivered, and why."""

    event: event_pb2.Event
    attempts: int
    error: str
    dead_at: float


@dataclass(frozen=True)
class StatusTransition:
    """One status update received for an outbound message."""

    state: int  # wahook.v1.DeliveryState
    occurred_at: int
    event_id: str
    applied: bool


@dataclass(frozen=True)
class StatusRecord:
    """The forward-only delivery state of one outbound message, with its history."""

    message_id: str
    state: int  # wahook.v1.DeliveryState
    state_time: int
    recipient_id: str
    errors: list[common_pb2.WhatsAppError] = field(default_factory=list)
    history: list[StatusTransition] = field(default_factory=list)


class Appender(Protocol):
    """What the webhook front needs of a log: appends and the /readyz check. Every
    EventLog is one; so is a ``--workers`` front's hand-off to the parent's writer
    (wahook.workers.handoff)."""

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        """As ``EventLog.append``."""
        ...

    async def check_writable(self) -> None:
        """As ``EventLog.check_writable``."""
        ...


class EventLog(Protocol):
    """A durable, deduplicating, append-only log of events with consumer groups.

    Every method may raise ``wahook.errors.LogUnavailableError`` when the backend
    cannot serve it; no backend library exception escapes.
    """

    def append(self, events: Sequence[event_pb2.Event]) -> asyncio.Future[AppendResult]:
        """Store events in order; durable (fsynced / committed) when the future resolves.

        A future, not a coroutine: the HTTP front waits for it with a callback, no task
        per POST. Bad events (no id, no dedupe key) raise ``InvalidArgumentError`` from
        the call itself, before anything is queued.

        Idempotent on ``Event.dedupe_key``: a duplicate is not stored again, even when
        two copies race on two connections. Status events also advance the message's
        forward-only status record in the same transaction. Returned events are not
        mutated; stored copies carry their sequence.
        """
        ...

    async def get(self, event_id: str) -> event_pb2.Event | None:
        """The stored event with this id (with its sequence), or None."""
        ...

    async def list_events(
        self, flt: EventFilter, after_sequence: int, until_sequence: int, limit: int
    ) -> list[event_pb2.Event]:
        """Stored events matching ``flt`` with after < sequence <= until (until 0: no bound),
        in sequence order, at most ``limit``."""
        ...

    async def head_sequence(self) -> int:
        """The newest sequence stored, 0 when the log is empty."""
        ...

    async def message_status(self, message_id: str) -> StatusRecord | None:
        """The status record of an outbound message, or None when no status arrived."""
        ...

    async def create_group(
        self,
        name: str,
        flt: EventFilter,
        start: StartPosition,
        now: float,
        settings: GroupSettings = DEFAULT_GROUP_SETTINGS,
    ) -> GroupInfo:
        """Get or create a consumer group; either way it was active at ``now``.
        ``start``, ``flt`` and ``settings`` apply only when the group is new; an existing
        group with a different non-empty filter raises ``FailedPreconditionError`` (an
        empty ``flt`` always joins)."""
        ...

    async def fetch(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> EncodedBatch:
        """Hand up to ``max_count`` events to ``consumer``, as stored bytes with the head
        the fetch saw (see ``EncodedBatch``): first pending events whose deadline passed
        (attempt + 1), then new events after the group's position that match its filter
        (attempt 1; non-matching ones are skipped for good). Each handed-out event is
        pending until ``now + ack_deadline``, under a new lease (the same for the whole
        fetch). A due event whose next attempt would pass the group's
        ``max_delivery_attempts`` goes to its dead letters instead (error: its last
        nack's or release's, else that its deadline passed). Committed on return (survives a
        crash of the process); a backend may skip the fsync here, since losing group
        state to a power cut only means some events are delivered again.
        ``NotFoundError`` when the group does not exist."""
        ...

    async def ack_leases(self, group: str, leases: Sequence[Lease]) -> list[int]:
        """Remove the pending entries still under these leases; the sequences removed.
        An entry delivered again since (a new lease), dead-lettered, or not pending is
        left alone."""
        ...

    async def nack_leases(
        self, group: str, leases: Sequence[Lease], redeliver_at: float, error: str
    ) -> list[int]:
        """``nack`` of the entries still under these leases, keeping ``error`` as the
        reason; the sequences nacked."""
        ...

    async def modify_deadlines(
        self, group: str, leases: Sequence[Lease], deadline: float
    ) -> list[int]:
        """Set the ack deadline of the entries still under these leases; the sequences
        changed."""
        ...

    async def dead_letter(
        self, group: str, leases: Sequence[Lease], error: str, now: float
    ) -> list[int]:
        """Move the entries still under these leases to the group's dead letters (e.g.
        an event too large to deliver); the sequences moved."""
        ...

    async def release(self, group: str, consumer: str, now: float) -> int:
        """The consumer's stream ended: its pending entries become deliverable at ``now``."""
        ...

    async def group_info(self, group: str) -> GroupInfo | None:
        """A group's position, pending count and lag, or None when it does not exist."""
        ...

    async def list_groups(self, after_name: str, limit: int) -> list[GroupInfo]:
        """Up to ``limit`` groups whose name sorts after ``after_name``, by name."""
        ...

    async def delete_group(self, group: str) -> bool:
        """Delete a group with its pending entries and dead letters; False when absent."""
        ...

    async def seek_group(self, group: str, position: StartPosition, now: float) -> GroupInfo:
        """Move the group's position (as a new group's ``start``) and drop every pending
        entry and the dead letters after the position, so that every event after it is
        delivered again as new; the group was active at ``now``. ``NotFoundError`` when
        the group does not exist."""
        ...

    async def touch_groups(self, groups: Sequence[str], now: float) -> None:
        """These groups have a subscriber at ``now`` (they are not idle)."""
        ...

    async def expire_groups(self, now: float) -> list[str]:
        """Delete every group idle for longer than its ``expire_after_idle`` (0: never)
        at ``now``; their names."""
        ...

    async def list_dead_letters(
        self, group: str, after_sequence: int, limit: int
    ) -> list[DeadLetter]:
        """Up to ``limit`` of the group's dead letters after ``after_sequence``, in
        sequence order. ``NotFoundError`` when the group does not exist."""
        ...

    async def redeliver_dead_letters(
        self, group: str, sequences: Sequence[int] | None, now: float
    ) -> int:
        """Make these dead letters (None: all) pending again, due at ``now``, their
        attempt count starting again; how many. ``NotFoundError`` for no group."""
        ...

    async def discard_dead_letters(self, group: str, sequences: Sequence[int] | None) -> int:
        """Delete these dead letters (None: all); how many. ``NotFoundError`` for no
        group."""
        ...

    async def prune(self, older_than: float) -> int:
        """Delete events received before ``older_than`` that no group still needs
        (every group's position is past them and none has them pending or
        dead-lettered). A status event's entry in its message's status history goes
        with it, and a message's status record with the last of them
        (``message_status`` then returns None)."""
        ...

    async def wait_for_append(self, after_sequence: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until the head is past ``after_sequence`` or ``timeout`` seconds pass;
        True when it is past."""
        ...

    async def check_writable(self) -> None:
        """Raise ``LogUnavailableError`` unless a write would succeed now (for /readyz)."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the backend."""
        ...
