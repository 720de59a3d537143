"""Log lines that can come in storms (a 503 per POST while the log is down, EMFILE per
accept) written at most once per interval, each saying how many it stands for.

One Redis outage wrote 44,374 identical WARNING lines, one per refused POST; the
counters in /metrics already count every one, so the log only needs to say it is
happening, and how often.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """``log(msg, *args)`` writes the first occurrence at once, then at most one line per
    ``every`` seconds, suffixed with the number of occurrences it summarises."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._every = every
        self._clock = clock
        self._last: float | None = None
        self._unlogged = 0

    def log(self, msg: str, *args: object) -> None:
        now = self._clock()
        self._unlogged += 1
        if self._last is not None and now - self._last < self._every:
            return
        count, self._unlogged = self._unlogged, 0
        since = ""
        if self._last is not None:
            since = f" ({count} times in the last {now - self._last:.0f}s)"
        self._last = now
        self._logger.log(self._level, msg + since, *args)
