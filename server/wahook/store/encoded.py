"""An optional EventLog capability: fetch() handing out stored event bytes unparsed.

A Subscribe stream only forwards events, so parsing each stored Event and serialising it
again is wasted work (docs/decisions/0011-subscribe-sends-stored-bytes.md). A backend
that keeps events serialised implements ``fetch_encoded`` with exactly the semantics of
``EventLog.fetch``; the gRPC layer uses it when present and falls back to ``fetch``.

The batch is columnar (parallel lists, one deadline) rather than one object per event:
every delivery of one fetch shares its deadline (``now + ack_deadline``), and a small
object per event, built in the writer thread, was a measurable part of a catch-up's CPU
(docs/architecture.md, "Why it is fast": delivery).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from wahook.store.base import Delivery
from wahook.v1 import event_pb2


def decode_event(sequence: int, data: bytes) -> event_pb2.Event:
    """A stored event's bytes parsed, with its sequence (stored bytes may lack it)."""
    event = event_pb2.Event.FromString(data)
    event.sequence = sequence
    return event


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """What ``fetch_encoded`` returns. Delivery ``i`` is ``sequences[i]``, its
    ``attempts[i]`` and ``events[i]``, a serialised ``wahook.v1.Event`` whose ``sequence``
    field may be unset (``sequences[i]`` is the truth); sequences ascend. ``deadline`` is
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
        """The batch as ``EventLog.fetch`` returns it: each event parsed."""
        return [
            Delivery(decode_event(seq, data), attempt, self.deadline, self.lease)
            for seq, attempt, data in zip(self.sequences, self.attempts, self.events, strict=True)
        ]


@runtime_checkable
class SupportsEncodedFetch(Protocol):
    async def fetch_encoded(
        self, group: str, consumer: str, max_count: int, ack_deadline: float, now: float
    ) -> EncodedBatch:
        """``EventLog.fetch``, returning the events serialised, with the head."""
        ...
