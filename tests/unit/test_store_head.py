"""HeadWatch and check_appendable, shared by both EventLog backends."""

from __future__ import annotations

import asyncio

import pytest
from wahook.errors import InvalidArgumentError
from wahook.store.head import HeadWatch, check_appendable
from wahook.v1 import event_pb2


async def test_a_waiter_wakes_when_the_head_passes_its_sequence_not_before() -> None:
    watch = HeadWatch(5)
    waiter = asyncio.ensure_future(watch.wait_past(6, 600.0, closed=lambda: False))
    await asyncio.sleep(0.01)
    watch.advance(6)  # not past 6: the waiter keeps waiting on the next Event
    await asyncio.sleep(0.01)
    assert not waiter.done()
    watch.advance(7)
    # Woken by the advance: its own timeout is 10 minutes away.
    assert await asyncio.wait_for(waiter, 60) is True
    assert watch.head == 7


async def test_a_head_already_past_answers_at_once_and_a_lower_one_is_ignored() -> None:
    watch = HeadWatch(10)
    watch.advance(3)
    assert watch.head == 10
    assert await watch.wait_past(9, 0.0, closed=lambda: False) is True


async def test_timeout_and_close_end_the_wait_with_false() -> None:
    watch = HeadWatch(1)
    assert await watch.wait_past(1, 0.02, closed=lambda: False) is False
    closed = False
    calls: list[int] = []
    waiter = asyncio.ensure_future(
        watch.wait_past(1, 600.0, closed=lambda: closed, before_wait=lambda: calls.append(1))
    )
    await asyncio.sleep(0.01)
    closed = True
    watch.close()
    # Woken by the close: its own timeout is 10 minutes away.
    assert await asyncio.wait_for(waiter, 60) is False
    assert calls == [1]  # before the one wait, not again after close


def test_check_appendable_names_the_first_bad_event() -> None:
    good = event_pb2.Event(id="a", dedupe_key="k")
    check_appendable([good])
    with pytest.raises(InvalidArgumentError, match=r"events\[1\]\.dedupe_key is empty"):
        check_appendable([good, event_pb2.Event(id="b")])
    with pytest.raises(InvalidArgumentError, match=r"events\[0\]\.id is empty"):
        check_appendable([event_pb2.Event(dedupe_key="k")])
