"""A bounded fuzz run in make test: 3,000 signed, mutated bodies, never a 5xx, and no
unsigned one stored (the long run: tests/fuzz_webhook.py, README Security)."""

from __future__ import annotations

from fuzz_webhook import NEW_EVENTS, fuzz
from wahook.store.base import EventFilter
from wahook_testkit import APP_SECRET, HttpFront

COUNT = 3000


async def test_signed_mutated_bodies_never_get_a_5xx(http_front: HttpFront) -> None:
    statuses = await fuzz("127.0.0.1", http_front.port, APP_SECRET, seed=7, count=COUNT)
    new = statuses.pop(NEW_EVENTS)
    assert sum(statuses.values()) == COUNT
    assert not [s for s in statuses if s >= 500]
    assert statuses[200] > 0  # some mutations still make valid events: the path is exercised
    assert statuses[401] > 0  # the unsigned tenth
    assert new > 0
    # Everything stored was announced by a 200 to a signed body: nothing else got in.
    stored = await http_front.event_log.list_events(EventFilter(), 0, 0, 100_000)
    assert len(stored) == new
