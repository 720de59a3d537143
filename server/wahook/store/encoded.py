"""An optional EventLog capability: fetch() handing out stored event bytes unparsed.

A Subscribe stream only forwards events, so parsing each stored Event and serialising it
again is wasted work (a third of the CPU of a catch-up). A backend that keeps events
serialised implements ``fetch_encoded`` with exactly the semantics of
``EventLog.fetch``; the gRPC layer uses it when present and falls back to ``fetch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class EncodedDelivery:
    """One event handed to one consumer, as stored: ``event_bytes`` is a serialised
    ``wahook.v1.Event`` whose ``sequence`` field may be unset; ``sequence`` is the truth."""

    sequence: int
    attempt: int
    deadline: float
    event_bytes: bytes


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """What ``fetch_encoded`` returns: the deliveries, and the log's head sequence as the
    fetch saw it (so a caller knows, without another query, that nothing after ``head``
    was considered and can wait for appends past it)."""

    deliveries: list[EncodedDelivery]
    head: int


@runtime_checkable
class SupportsEncodedFetch(Protocol):
    async def fetch_encoded(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> EncodedBatch:
        """``EventLog.fetch``, returning the events serialised, with the head."""
        ...
