"""The in-flight window of a Subscribe stream, driven by hand-picked times (no clock, no sleeps)."""

from __future__ import annotations

from wahook.rpc.window import FIRST_FETCH, InFlightWindow

T0 = 1_000.0


def events(*sizes: int) -> list[bytes]:
    return [b"x" * n for n in sizes]


def test_held_events_take_room_until_their_deadline_passes() -> None:
    w = InFlightWindow(max_in_flight=5)
    assert w.room(T0) == 5
    w.add([1, 2, 3], lease=7, deadline=T0 + 30, events=events(1, 1, 1))
    assert w.room(T0) == 2
    assert w.lease(2) == 7
    assert w.lease(4) is None
    assert w.count(T0 + 29.999) == 3
    assert w.count(T0 + 30) == 0  # the deadline passed: no longer counted
    assert w.lease(2) is None
    assert w.room(T0 + 30) == 5


def test_batches_expire_each_at_its_own_deadline() -> None:
    w = InFlightWindow(max_in_flight=10)
    w.add([1, 2], lease=1, deadline=T0 + 10, events=events(1, 1))
    w.add([3], lease=2, deadline=T0 + 5, events=events(1))
    assert w.count(T0 + 5) == 2
    assert w.lease(3) is None
    assert w.count(T0 + 10) == 0


def test_forget_frees_room_and_an_acked_sequence_expires_nothing_later() -> None:
    w = InFlightWindow(max_in_flight=3)
    w.add([1, 2, 3], lease=1, deadline=T0 + 30, events=events(1, 1, 1))
    w.forget(2)
    w.forget(2)  # twice is harmless
    assert w.room(T0) == 1
    # Fetched again under a new lease and a later deadline: the old deadline passing
    # does not drop it.
    w.add([2], lease=4, deadline=T0 + 60, events=events(1))
    assert w.count(T0 + 30) == 1
    assert w.lease(2) == 4


def test_forget_if_held_and_move_act_only_under_the_lease_held() -> None:
    w = InFlightWindow(max_in_flight=10)
    w.add([1, 2], lease=5, deadline=T0 + 30, events=events(1, 1))
    w.forget_if_held([(1, 4), (2, 5)])  # 1 under an older lease: kept
    assert (w.lease(1), w.lease(2)) == (5, None)
    assert w.move([(1, 4)], T0 + 100) == []
    assert w.move([(1, 5), (9, 5)], T0 + 100) == [1]
    assert w.count(T0 + 30) == 1  # its old deadline no longer applies
    assert w.count(T0 + 100) == 0


def test_the_byte_bound_limits_room_by_the_latest_average_size() -> None:
    w = InFlightWindow(max_in_flight=1000, max_bytes=1000)
    assert w.room(T0) == FIRST_FETCH  # sizes unknown yet: a few
    w.add([1, 2], lease=1, deadline=T0 + 30, events=events(100, 200))
    assert w.bytes == 300
    # 700 bytes left at an average of 151 bytes an event: 4 more.
    assert w.room(T0) == 700 // 151
    w.add([3, 4, 5, 6, 7], lease=2, deadline=T0 + 30, events=events(140, 140, 140, 140, 140))
    assert w.bytes == 1000
    assert w.room(T0) == 0  # full by bytes, far under the count
    w.forget(1)
    assert w.bytes == 900
    assert w.room(T0) == 1  # 100 bytes left is under one event: one still goes
    assert w.count(T0 + 30) == 0
    assert w.bytes == 0


def test_without_a_byte_bound_sizes_are_not_kept() -> None:
    w = InFlightWindow(max_in_flight=4)
    w.add([1, 2], lease=1, deadline=T0 + 30, events=events(10**6, 10**6))
    assert w.bytes == 0
    assert w.room(T0) == 2


def test_clear_forgets_every_lease() -> None:
    w = InFlightWindow(max_in_flight=4, max_bytes=100)
    w.add([1, 2], lease=1, deadline=T0 + 30, events=events(10, 10))
    w.clear()
    assert len(w) == 0
    assert w.bytes == 0
    assert w.room(T0) == 4


def test_compact_drops_heap_entries_of_events_no_longer_held() -> None:
    w = InFlightWindow(max_in_flight=100_000)
    seqs = list(range(1, 3001))
    w.add(seqs, lease=1, deadline=T0 + 30, events=[b""] * len(seqs))
    w.add([5000], lease=2, deadline=T0 + 40, events=[b""])
    for seq in seqs:
        w.forget(seq)
    w.compact()
    assert w.heap_entries() == 1  # only the one still held
    assert w.count(T0 + 39) == 1
    assert w.count(T0 + 40) == 0
    w.compact()  # nothing to rebuild
    assert w.heap_entries() == 0
