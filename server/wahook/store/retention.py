"""Retention: prune the event log periodically (events older than a maximum age that no
consumer group still needs), and delete consumer groups left idle past their
``expire_after_idle`` so that an abandoned group stops holding events back. The runtime
starts ``prune_periodically`` and ``expire_groups_periodically`` as tasks and cancels
them at shutdown, before closing the log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

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


# How often idle groups are looked for. Groups with a stream open here are marked active
# each time first, so with several replicas sharing one Redis a group connected to any
# of them stays: the shortest expire_after_idle (10 minutes) is well above this.
EXPIRE_INTERVAL = 60.0


async def expire_groups_periodically(
    log: EventLog,
    connected: Callable[[], Sequence[str]],
    *,
    every: float = EXPIRE_INTERVAL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every ``every`` seconds, mark the ``connected()`` groups active, then delete the
    groups idle past their expiry; until cancelled."""
    while True:
        await expire_idle_groups(log, connected(), clock())
        await asyncio.sleep(every)


async def expire_idle_groups(log: EventLog, connected: Sequence[str], now: float) -> list[str]:
    """One round of ``expire_groups_periodically``; the names of the groups deleted."""
    try:
        await log.touch_groups(connected, now)
        gone = await log.expire_groups(now)
    except LogUnavailableError as exc:
        _log.warning("expiring idle consumer groups failed: %s", exc)
        return []
    except Exception:
        _log.exception("expiring idle consumer groups failed unexpectedly; retrying next round")
        return []
    for name in gone:
        _log.info("consumer group %s expired: no subscriber for its expire_after_idle", name)
    return gone
