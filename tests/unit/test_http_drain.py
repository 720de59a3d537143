"""The webhook front's drain: a wait woken by the last POST in flight, bounded by its limit."""

from __future__ import annotations

import asyncio

from wahook.http.drain import Drain


async def test_nothing_in_flight_returns_at_once() -> None:
    drain = Drain()
    drain.start()
    assert drain.draining
    assert await drain.wait(3600) == 0


async def test_the_wait_ends_when_the_last_post_leaves() -> None:
    drain = Drain()
    drain.enter()
    drain.enter()
    drain.start()
    waiting = asyncio.ensure_future(drain.wait(3600))
    await asyncio.sleep(0)  # the wait is under way
    drain.leave()
    await asyncio.sleep(0)
    assert not waiting.done()  # one still in flight
    drain.leave()
    assert await waiting == 0


async def test_the_wait_gives_up_at_its_limit_and_says_how_many_still_run() -> None:
    drain = Drain()
    drain.enter()
    drain.start()
    assert await drain.wait(0.01) == 1


def test_counting_without_a_wait_needs_no_loop() -> None:
    drain = Drain()
    drain.enter()
    drain.leave()
    assert drain.in_flight == 0
    assert not drain.draining
