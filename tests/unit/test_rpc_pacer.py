"""A Subscribe stream's linger and pacing, driven by hand-picked times (no clock, no sleeps)."""

from __future__ import annotations

import pytest
from wahook.rpc.pacer import PACE_ABOVE, PACE_FACTOR, PACE_MAX, Pacer

T0 = 1_000.0


def live_cycle(p: Pacer, start: float, seconds: float) -> float:
    """One live cycle (wake, one fetch, sleep) of ``seconds`` from ``start``; its end."""
    p.woke(start)
    p.fetched(start)
    p.sleeping(start + seconds)
    return start + seconds


def test_an_append_within_the_linger_waits_for_its_end() -> None:
    p = Pacer(linger=0.002, now=T0)
    assert p.append_delay(T0) == 0.0  # nothing fetched yet
    p.fetched(T0)
    assert p.append_delay(T0 + 0.0005) == pytest.approx(0.0015)
    assert p.append_delay(T0 + 0.002) == 0.0
    assert p.append_delay(T0 + 5) == 0.0  # after a quiet spell: at once


def test_quick_cycles_set_no_pace() -> None:
    p = Pacer(linger=0.0, now=T0)
    t = T0
    for _ in range(50):
        t = live_cycle(p, t, 0.001)
    assert p.pace == 0.0
    assert p.append_delay(t) == 0.0


def test_saturated_cycles_space_fetches_by_a_multiple_of_their_length() -> None:
    p = Pacer(linger=0.002, now=T0)
    t = T0
    for _ in range(60):  # the moving average converges on the cycle's length
        t = live_cycle(p, t, 0.02)
    assert p.pace == pytest.approx(0.02 * PACE_FACTOR, rel=1e-3)
    p.fetched(t)
    assert p.append_delay(t) == pytest.approx(
        p.pace
    )  # longer than the linger: the pace spaces them
    assert p.append_delay(t + p.pace) == 0.0


def test_one_slow_cycle_does_not_pace() -> None:
    p = Pacer(linger=0.0, now=T0)
    t = live_cycle(p, T0, 0.001)
    t = live_cycle(p, t, 0.045)  # averaged in with weight 0.2: 9 ms, under the threshold
    assert p.pace == 0.0
    t = live_cycle(p, t, 0.045)  # two in a row: over it
    assert p.pace / PACE_FACTOR > PACE_ABOVE


def test_the_pace_is_capped() -> None:
    p = Pacer(linger=0.0, now=T0)
    t = T0
    for _ in range(30):
        t = live_cycle(p, t, 10.0)  # a cycle counts at most PACE_MAX
    assert p.pace == PACE_MAX


def test_catch_up_cycles_do_not_count_and_quick_cycles_end_the_pace() -> None:
    p = Pacer(linger=0.0, now=T0)
    t = T0
    for _ in range(30):
        t = live_cycle(p, t, 0.05)
    assert p.pace > 0.0
    paced = p.pace
    # A catch-up (several fetches in one cycle) is not a live cycle: the pace stays.
    p.woke(t)
    p.fetched(t)
    p.fetched(t + 1)
    p.sleeping(t + 2)
    assert p.pace == paced
    # A sleep with no fetch since waking (a heartbeat, an ack) counts neither.
    p.woke(t + 2)
    p.sleeping(t + 3)
    assert p.pace == paced
    t += 3
    for _ in range(30):
        t = live_cycle(p, t, 0.001)
    assert p.pace == 0.0
