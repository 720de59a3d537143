"""One Subscribe stream's in-flight window: the leases it holds, their ack deadlines, their bytes.

An event is in flight on a stream from the fetch that handed it out until it is acked,
nacked or its ack deadline passes, whichever comes first. The stream fetches only while
the window has room: fewer than ``max_in_flight`` events and, with ``max_bytes``, fewer
event bytes than that (so a reader that stops reading makes the server hold, in gRPC's
buffers, at most about that much for it). No I/O and no clock of its own: every call
that depends on time takes ``now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

# With a byte bound, a stream's first fetch (event sizes unknown yet) takes this many.
FIRST_FETCH = 16


class InFlightWindow:
    """The sequences one stream holds, each with its lease and ack deadline."""

    def __init__(self, max_in_flight: int, max_bytes: int = 0) -> None:
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes  # 0: no byte bound
        # sequence -> (lease, ack deadline), one tuple shared by a whole batch; the heap,
        # one entry per batch (deadline, tie-breaker, its sequences), finds the ones whose
        # deadline passed. Per batch, not per event: a catch-up hands out 100,000 events
        # a second.
        self._held: dict[int, tuple[int, float]] = {}
        self._deadlines: list[tuple[float, int, Sequence[int]]] = []
        self._heap_size = 0  # sequences held by the heap's entries, gone ones included
        self._batches = 0
        # With max_bytes: each held event's size, their sum, and the average size of the
        # latest batch (what the next fetch is sized by).
        self._sizes: dict[int, int] = {}
        self.bytes = 0
        self._event_size = 0

    def __len__(self) -> int:
        """What the window holds, expired entries not yet swept included."""
        return len(self._held)

    def lease(self, seq: int) -> int | None:
        """The lease under which the stream holds ``seq`` now, or None."""
        held = self._held.get(seq)
        return None if held is None else held[0]

    def count(self, now: float) -> int:
        """The events held at ``now``: those whose deadline passed are dropped first."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, seqs = heapq.heappop(self._deadlines)
            self._heap_size -= len(seqs)
            for seq in seqs:
                held = self._held.get(seq)
                if held is not None and held[1] == deadline:
                    self.forget(seq)
        return len(self._held)

    def room(self, now: float) -> int:
        """Events the stream may fetch at ``now``: the window less what it holds and, with
        ``max_bytes``, what fits in the bytes left at the latest batch's average size (a
        first fetch, size unknown, takes FIRST_FETCH)."""
        room = self.max_in_flight - self.count(now)
        if self.max_bytes and room > 0:
            left = self.max_bytes - self.bytes
            if left <= 0:
                return 0
            fits = max(1, left // self._event_size) if self._event_size else FIRST_FETCH
            room = min(room, fits)
        return room

    def add(
        self, seqs: Sequence[int], lease: int, deadline: float, events: Sequence[bytes]
    ) -> None:
        """A fetched batch (its sequences and their stored bytes) is held until ``deadline``."""
        self._held.update(dict.fromkeys(seqs, (lease, deadline)))
        if self.max_bytes:
            sizes = [len(e) for e in events]
            self._sizes.update(zip(seqs, sizes, strict=True))
            total = sum(sizes)
            self.bytes += total
            self._event_size = total // len(sizes) + 1
        self._push(deadline, seqs)

    def forget(self, seq: int) -> None:
        """``seq`` is no longer in flight (acked, nacked or expired)."""
        if self._held.pop(seq, None) is not None:
            self.bytes -= self._sizes.pop(seq, 0)

    def forget_if_held(self, leases: Iterable[tuple[int, int]]) -> None:
        """Forget each (sequence, lease) still held under that lease."""
        for seq, lease in leases:
            if self.lease(seq) == lease:
                self.forget(seq)

    def move(self, leases: Iterable[tuple[int, int]], deadline: float) -> list[int]:
        """Each (sequence, lease) still held under that lease is due at ``deadline`` now;
        returns the sequences moved."""
        moved = []
        for seq, lease in leases:
            if self.lease(seq) == lease:
                self._held[seq] = (lease, deadline)
                moved.append(seq)
        if moved:
            self._push(deadline, moved)
        return moved

    def clear(self) -> None:
        """Every lease ended (the group was sought): nothing is in flight."""
        self._held.clear()
        self._sizes.clear()
        self.bytes = 0
        self.compact()

    def compact(self) -> None:
        """Rebuild the heap when most of its entries are gone: acked sequences stay in it
        until their deadline, at 100k events/s and a 30 s deadline millions of them."""
        if self._heap_size > 2 * len(self._held) + 1024:
            by_deadline: dict[float, list[int]] = {}
            for seq, (_, deadline) in self._held.items():
                by_deadline.setdefault(deadline, []).append(seq)
            self._deadlines, self._heap_size = [], 0
            for deadline, seqs in by_deadline.items():
                self._push(deadline, seqs)

    def heap_entries(self) -> int:
        """Sequences the deadline heap still carries (for tests of ``compact``)."""
        return self._heap_size

    def _push(self, deadline: float, seqs: Sequence[int]) -> None:
        self._batches += 1
        heapq.heappush(self._deadlines, (deadline, self._batches, seqs))
        self._heap_size += len(seqs)
