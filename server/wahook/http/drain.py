"""The webhook front's shutdown: the POSTs in flight, counted, and a wait for the last one.

Once ``start`` ran, new POSTs get 503 (Meta retries them elsewhere or later) while those
already in flight finish; ``wait`` returns when the last of them leaves (an Event the
last ``leave`` sets, not a poll), or when its time is up.
"""

from __future__ import annotations

import asyncio
import contextlib


class Drain:
    """POSTs in flight (counted from a complete body to the answer) and whether to refuse."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None  # made by wait, set by the last leave

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def start(self) -> None:
        """Refuse new POSTs from now on."""
        self.draining = True

    async def wait(self, limit: float) -> int:
        """Wait up to ``limit`` seconds for the POSTs in flight to finish; returns how many
        are still running (0: all finished)."""
        if self.in_flight:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), limit)
        return self.in_flight
