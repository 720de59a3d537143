"""Retention: prune the event log periodically (events older than a maximum age that no
consumer group still needs). The runtime starts ``prune_periodically`` as a task and
cancels it at shutdown, before closing the log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from wahook.errors import LogUnavailableError
from wahook.store.base import EventLog

_log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 7 * 24 * 3600.0


async def prune_periodically(
    log: EventLog,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    every: float = 3600.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Prune once now, then every ``every`` seconds, until cancelled."""
    while True:
        try:
            pruned = await log.prune(clock() - max_age)
        except LogUnavailableError as exc:
            # Retention can wait for the next round; the log's users see the outage.
            _log.warning("pruning the event log failed: %s", exc)
        except Exception:
            # A bug in pruning must not end retention for the life of the process.
            _log.exception("pruning the event log failed unexpectedly; retrying next round")
        else:
            if pruned:
                _log.info("pruned %d events older than %.0f s", pruned, max_age)
        await asyncio.sleep(every)
