"""The forward-only delivery state rule: every pair of states, decided by hand."""

from __future__ import annotations

import pytest
from wahook.core.status_order import advances
from wahook.v1 import status_pb2 as s

UNSPECIFIED = s.DELIVERY_STATE_UNSPECIFIED
SENT = s.DELIVERY_STATE_SENT
DELIVERED = s.DELIVERY_STATE_DELIVERED
READ = s.DELIVERY_STATE_READ
PLAYED = s.DELIVERY_STATE_PLAYED
FAILED = s.DELIVERY_STATE_FAILED
OTHER = s.DELIVERY_STATE_OTHER

ALL = [UNSPECIFIED, SENT, DELIVERED, READ, PLAYED, FAILED, OTHER]

# (current, new) pairs that move the state forward; every other pair must not.
FORWARD = {
    (UNSPECIFIED, SENT),
    (UNSPECIFIED, DELIVERED),
    (UNSPECIFIED, READ),
    (UNSPECIFIED, PLAYED),
    (UNSPECIFIED, FAILED),
    (SENT, DELIVERED),
    (SENT, READ),
    (SENT, PLAYED),
    (SENT, FAILED),
    (DELIVERED, READ),
    (DELIVERED, PLAYED),
    (DELIVERED, FAILED),
    (READ, PLAYED),
    (READ, FAILED),
    (PLAYED, FAILED),
    # OTHER has no place in the order: a known state after it still applies.
    (OTHER, SENT),
    (OTHER, DELIVERED),
    (OTHER, READ),
    (OTHER, PLAYED),
    (OTHER, FAILED),
}


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("new", ALL)
def test_every_pair(current: int, new: int) -> None:
    assert advances(current, new) is ((current, new) in FORWARD)


def test_late_delivered_never_undoes_read() -> None:
    assert not advances(READ, DELIVERED)
    assert not advances(PLAYED, DELIVERED)


def test_failed_is_final() -> None:
    assert all(not advances(FAILED, new) for new in ALL)


def test_other_never_advances() -> None:
    assert all(not advances(current, OTHER) for current in ALL)


def test_unknown_future_enum_value_never_advances() -> None:
    assert not advances(SENT, 99)
