"""When one Subscribe stream may fetch on an append: the linger, and pacing under overload.

Append-driven fetches of a stream come at most once per ``linger`` seconds: under heavy
ingest the appends of several commits go out together (one fetch and one ack per few
commits instead of per commit, so readers do not tax ingest), while an append after a
quiet spell is fetched at once.

Under overload they are paced: on a saturated core live readers' fetch cycles would tax
every POST, so when cycles (wake, fetch, encode, send) take over 10 ms on average,
append-driven fetches are spaced by 6x that (at most 0.25 s): fewer, bigger batches
(docs/decisions/0016-fetch-linger-and-pacing.md). No I/O and no clock of its own: every
call takes ``now``.
"""

from __future__ import annotations

# A moving average of a live cycle's seconds (PACE_WEIGHT for the latest, so a single
# slow cycle does not count) over PACE_ABOVE means the loop is saturated; append-driven
# fetches are then spaced by PACE_FACTOR times that average (at most PACE_MAX).
PACE_ABOVE = 0.010
PACE_WEIGHT = 0.2
PACE_FACTOR = 6.0
PACE_MAX = 0.25


class Pacer:
    """One stream's fetch cycles: when it last fetched, how long its cycles take."""

    def __init__(self, linger: float, now: float) -> None:
        self.linger = linger
        self._last_fetch = 0.0
        self._cycle_start = now  # when the stream last woke from a sleep
        self._cycle_fetches = 0  # fetches since then
        self._busy = 0.0  # moving average of the seconds a live cycle takes
        self.pace = 0.0  # least seconds between append-driven fetches, under overload

    def fetched(self, now: float) -> None:
        """The stream fetches at ``now``."""
        self._last_fetch = now
        self._cycle_fetches += 1

    def sleeping(self, now: float) -> None:
        """The stream goes to sleep at ``now``: a live cycle (one fetch since it woke; a
        catch-up fetches several times) counts in the average, and sets the pace."""
        if self._cycle_fetches == 1:
            cycle = now - self._cycle_start
            self._busy += PACE_WEIGHT * (min(cycle, PACE_MAX) - self._busy)
            busy = self._busy
            self.pace = min(busy * PACE_FACTOR, PACE_MAX) if busy > PACE_ABOVE else 0.0

    def woke(self, now: float) -> None:
        """The stream woke at ``now``: a new cycle starts."""
        self._cycle_start = now
        self._cycle_fetches = 0

    def append_delay(self, now: float) -> float:
        """Seconds from ``now`` until an append may make the stream fetch (0: at once)."""
        return max(0.0, self._last_fetch + max(self.linger, self.pace) - now)
