"""The EventLog protocol: what every storage backend (SQLite, Redis Streams) must do.

One contract test suite (tests/contract/) runs against every implementation. Times
are Unix seconds as floats passed in by the caller (``now``), so backends and tests
never read the clock themselves where a decision depends on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
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


@dataclass(frozen=True)
class Delivery:
    """One event handed to one consumer of a group."""

    event: event_pb2.Event
    attempt: int
    deadline: float


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


class EventLog(Protocol):
    """A durable, deduplicating, append-only log of events with consumer groups.

    Every method may raise ``wahook.errors.LogUnavailableError`` when the backend
    cannot serve it; no backend library exception escapes.
    """

    def append(self, events: Sequence[event_pb2.Event]) -> Awaitable[AppendResult]:
        """Store events in order; durable (fsynced / committed) when it returns.

        An awaitable: an ``async def`` does, and so does a method returning an
        ``asyncio.Future`` (the HTTP front then waits with a callback instead of a task
        per POST; it passes the result through ``asyncio.ensure_future`` either way).

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
        self, name: str, flt: EventFilter, start: StartPosition, now: float
    ) -> GroupInfo:
        """Get or create a consumer group. ``start`` and ``flt`` apply only when the group
        is new; an existing group with a different non-empty filter raises
        ``FailedPreconditionError`` (an empty ``flt`` always joins)."""
        ...

    async def fetch(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> list[Delivery]:
        """Hand up to ``max_count`` events to ``consumer``: first pending events whose
        deadline passed (attempt + 1), then new events after the group's position that
        match its filter (attempt 1; non-matching ones are skipped for good). Each
        handed-out event is pending until ``now + ack_deadline``. Committed on return
        (survives a crash of the process); a backend may skip the fsync here, since losing
        group state to a power cut only means some events are delivered again."""
        ...

    async def ack(self, group: str, sequences: Sequence[int]) -> int:
        """Remove pending entries; returns how many were pending."""
        ...

    async def nack(self, group: str, sequences: Sequence[int], redeliver_at: float) -> int:
        """Make pending entries deliverable again at ``redeliver_at``; returns how many."""
        ...

    async def release(self, group: str, consumer: str, now: float) -> int:
        """The consumer's stream ended: its pending entries become deliverable at ``now``."""
        ...

    async def group_info(self, group: str) -> GroupInfo | None:
        """A group's position, pending count and lag, or None when it does not exist."""
        ...

    async def prune(self, older_than: float) -> int:
        """Delete events received before ``older_than`` that no group still needs
        (every group's position is past them and none has them pending). A status
        event's entry in its message's status history goes with it, and a message's
        status record with the last of them (``message_status`` then returns None)."""
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
