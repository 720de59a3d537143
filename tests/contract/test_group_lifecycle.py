"""The EventLog contract for leases, dead letters and a group's lifecycle (list, delete,
seek, idle expiry), run against every backend. Times are made up, as in test_eventlog."""

from __future__ import annotations

import pytest
from conftest import Opened, message
from wahook.errors import NotFoundError
from wahook.store.base import (
    DEFAULT_EXPIRE_AFTER_IDLE,
    DEFAULT_GROUP_SETTINGS,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    Delivery,
    EventFilter,
    EventLog,
    GroupSettings,
    StartPosition,
)

NOW = 1_800_000_000.0
DAY = 86400.0


async def group_with(
    log: EventLog, n: int, *, settings: GroupSettings = DEFAULT_GROUP_SETTINGS, name: str = "g"
) -> list[int]:
    """``n`` events appended and group ``name`` created before them; their sequences."""
    seqs = (await log.append([message(i, received=1000.0 + i) for i in range(n)])).sequences
    await log.create_group(name, EventFilter(), StartPosition(), NOW, settings)
    return seqs


def leases(got: list[Delivery]) -> list[tuple[int, int]]:
    return [(d.event.sequence, d.lease) for d in got]


async def pending(log: EventLog, group: str = "g") -> int:
    info = await log.group_info(group)
    assert info is not None
    return info.pending_count


# -- leases ---------------------------------------------------------------------------------


async def test_a_late_ack_never_acks_the_event_for_its_next_holder(event_log: EventLog) -> None:
    [s] = await group_with(event_log, 1)
    first = (await event_log.fetch("g", "a", 1, 30.0, NOW)).deliveries()
    # a's deadline passes; b gets the event again, under another lease.
    second = (await event_log.fetch("g", "b", 1, 30.0, NOW + 31)).deliveries()
    assert [d.attempt for d in second] == [2]
    assert second[0].lease != first[0].lease
    assert await event_log.ack_leases("g", leases(first)) == []
    assert await pending(event_log) == 1
    assert await event_log.nack_leases("g", leases(first), NOW + 31, "late") == []
    assert await event_log.modify_deadlines("g", leases(first), NOW + 999) == []
    # b's ack takes effect and the event is not delivered again.
    assert await event_log.ack_leases("g", leases(second)) == [s]
    assert await pending(event_log) == 0
    assert (await event_log.fetch("g", "c", 1, 30.0, NOW + 1000)).deliveries() == []


async def test_ack_leases_acts_on_exactly_the_current_ones(event_log: EventLog) -> None:
    seqs = await group_with(event_log, 40)
    got = (await event_log.fetch("g", "a", 40, 30.0, NOW)).deliveries()
    assert len({d.lease for d in got}) == 1
    lease = got[0].lease
    # A long run, a scattered few, one with a wrong lease, one never delivered.
    named = [(s, lease) for s in seqs[:30]] + [(seqs[32], lease), (seqs[35], lease)]
    named += [(seqs[38], lease + 1), (seqs[-1] + 5, lease)]
    acked = await event_log.ack_leases("g", named)
    assert sorted(acked) == [*seqs[:30], seqs[32], seqs[35]]
    assert await pending(event_log) == 8
    assert await event_log.ack_leases("g", []) == []


async def test_modify_deadlines_extends_a_lease(event_log: EventLog) -> None:
    [s] = await group_with(event_log, 1)
    got = (await event_log.fetch("g", "a", 1, 30.0, NOW)).deliveries()
    assert await event_log.modify_deadlines("g", leases(got), NOW + 100) == [s]
    assert (await event_log.fetch("g", "b", 1, 30.0, NOW + 50)).deliveries() == []
    again = (await event_log.fetch("g", "b", 1, 30.0, NOW + 101)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in again] == [(s, 2)]


async def test_a_shortened_deadline_redelivers_sooner(event_log: EventLog) -> None:
    [s] = await group_with(event_log, 1)
    got = (await event_log.fetch("g", "a", 1, 600.0, NOW)).deliveries()
    assert await event_log.modify_deadlines("g", leases(got), NOW + 5) == [s]
    assert (await event_log.fetch("g", "b", 1, 30.0, NOW + 6)).attempts == [2]


# -- dead letters ---------------------------------------------------------------------------


async def test_a_poison_event_is_dead_lettered_after_max_attempts(event_log: EventLog) -> None:
    s = await group_with(event_log, 3, settings=GroupSettings(max_delivery_attempts=3))
    got = (await event_log.fetch("g", "a", 1, 30.0, NOW)).deliveries()
    assert [d.event.sequence for d in got] == [s[0]]
    t = NOW
    for attempt in (2, 3):
        t += 31
        again = (await event_log.fetch("g", "a", 1, 30.0, t)).deliveries()
        assert [(d.event.sequence, d.attempt) for d in again] == [(s[0], attempt)]
    await event_log.nack_leases("g", leases(again), t, "handler: KeyError 'price'")
    # The 4th delivery would pass max_delivery_attempts: the fetch goes on with s[1].
    after = await event_log.fetch("g", "a", 1, 30.0, t + 1)
    assert (after.sequences, after.attempts, after.dead_lettered) == ([s[1]], [1], 1)
    [dead] = await event_log.list_dead_letters("g", 0, 10)
    assert (dead.event.sequence, dead.attempts) == (s[0], 3)
    assert dead.event.id == message(0).id
    assert dead.error == "handler: KeyError 'price'"
    assert dead.dead_at == t + 1
    info = await event_log.group_info("g")
    assert info is not None
    assert (info.pending_count, info.dead_letter_count) == (1, 1)


async def test_a_dead_letter_keeps_why_its_last_attempt_failed(event_log: EventLog) -> None:
    s = await group_with(event_log, 2, settings=GroupSettings(max_delivery_attempts=1))
    await event_log.fetch("g", "a", 1, 30.0, NOW)  # s[0]: its deadline passes
    await event_log.fetch("g", "b", 1, 30.0, NOW)  # s[1]: its stream ends
    await event_log.release("g", "b", NOW + 1)
    assert (await event_log.fetch("g", "c", 5, 30.0, NOW + 40)).deliveries() == []
    dead = await event_log.list_dead_letters("g", 0, 10)
    assert [(d.event.sequence, d.attempts) for d in dead] == [(s[0], 1), (s[1], 1)]
    assert dead[0].error == "not acked within its ack deadline"
    assert dead[1].error == "the subscriber's stream ended before it acked"


async def test_dead_letters_are_paged_redelivered_and_discarded(event_log: EventLog) -> None:
    s = await group_with(event_log, 5, settings=GroupSettings(max_delivery_attempts=1))
    got = (await event_log.fetch("g", "a", 5, 30.0, NOW)).deliveries()
    moved = await event_log.dead_letter("g", leases(got[:4]), "too large", NOW)
    assert sorted(moved) == s[:4]
    assert await event_log.dead_letter("g", [(s[4], got[4].lease + 1)], "x", NOW) == []
    page = await event_log.list_dead_letters("g", s[0], 2)
    assert [d.event.sequence for d in page] == s[1:3]
    assert {d.error for d in page} == {"too large"}
    # Redelivered: attempt 1 again (under a new lease), before newer events.
    assert await event_log.redeliver_dead_letters("g", [s[1], s[4]], NOW + 1) == 1
    again = (await event_log.fetch("g", "b", 5, 30.0, NOW + 1)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in again] == [(s[1], 1)]
    assert again[0].lease != got[1].lease
    assert await event_log.ack_leases("g", leases(got[1:2])) == []
    assert await event_log.discard_dead_letters("g", [s[0]]) == 1
    assert await event_log.discard_dead_letters("g", None) == 2
    assert await event_log.list_dead_letters("g", 0, 10) == []
    assert await event_log.redeliver_dead_letters("g", None, NOW) == 0
    for missing in (
        event_log.list_dead_letters("nope", 0, 1),
        event_log.redeliver_dead_letters("nope", None, NOW),
        event_log.discard_dead_letters("nope", None),
    ):
        with pytest.raises(NotFoundError, match="nope"):
            await missing


async def test_dead_letters_hold_back_pruning_until_discarded(event_log: EventLog) -> None:
    s = await group_with(event_log, 3, settings=GroupSettings(max_delivery_attempts=1))
    got = (await event_log.fetch("g", "a", 3, 30.0, NOW)).deliveries()
    await event_log.dead_letter("g", leases(got[:1]), "poison", NOW)
    await event_log.ack_leases("g", leases(got[1:]))
    assert await event_log.prune(2000.0) == 2
    assert [d.event.sequence for d in await event_log.list_dead_letters("g", 0, 9)] == [s[0]]
    await event_log.discard_dead_letters("g", None)
    assert await event_log.prune(2000.0) == 1


# -- lifecycle ------------------------------------------------------------------------------


async def test_groups_keep_their_settings_and_are_listed_by_name(event_log: EventLog) -> None:
    await event_log.append([message(1)])
    for name in ("b", "a", "c"):
        await event_log.create_group(name, EventFilter(), StartPosition(), NOW)
    custom = GroupSettings(max_delivery_attempts=5, expire_after_idle=0.0)
    await event_log.create_group("d", EventFilter(), StartPosition(), NOW, custom)
    # Joining later with other settings changes nothing.
    await event_log.create_group("d", EventFilter(), StartPosition(), NOW + 5)
    assert [g.name for g in await event_log.list_groups("", 2)] == ["a", "b"]
    rest = await event_log.list_groups("b", 10)
    assert [g.name for g in rest] == ["c", "d"]
    assert rest[1].settings == custom
    assert rest[1].last_active == NOW + 5
    assert rest[0].settings == GroupSettings(
        DEFAULT_MAX_DELIVERY_ATTEMPTS, DEFAULT_EXPIRE_AFTER_IDLE
    )
    assert (rest[0].head_sequence, rest[0].lag, rest[0].created_at) == (1, 1, NOW)


async def test_a_deleted_group_is_gone_and_stops_holding_back_pruning(
    event_log: EventLog,
) -> None:
    await group_with(event_log, 3, settings=GroupSettings(max_delivery_attempts=1))
    got = (await event_log.fetch("g", "a", 3, 30.0, NOW)).deliveries()
    await event_log.dead_letter("g", leases(got[:1]), "poison", NOW)
    assert await event_log.prune(2000.0) == 0
    assert await event_log.delete_group("g") is True
    assert await event_log.delete_group("g") is False
    assert await event_log.group_info("g") is None
    assert await event_log.list_groups("", 10) == []
    with pytest.raises(NotFoundError):
        await event_log.fetch("g", "a", 1, 30.0, NOW)
    assert await event_log.ack_leases("g", leases(got)) == []
    assert await event_log.prune(2000.0) == 3
    # Created again, it starts anew; the old leases mean nothing in it.
    await event_log.append([message(9, received=3000.0)])
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW + 1)
    again = (await event_log.fetch("g", "b", 5, 30.0, NOW + 1)).deliveries()
    assert [d.attempt for d in again] == [1]
    assert await event_log.ack_leases("g", [(again[0].event.sequence, got[0].lease)]) == []


async def test_seek_replays_from_a_sequence_and_ends_every_lease(event_log: EventLog) -> None:
    s = await group_with(event_log, 6, settings=GroupSettings(max_delivery_attempts=1))
    got = (await event_log.fetch("g", "a", 6, 30.0, NOW)).deliveries()
    await event_log.ack_leases("g", leases(got[:3]))
    await event_log.dead_letter("g", leases(got[0:1]) + leases(got[4:5]), "x", NOW)
    # s[4] is dead; s[3], s[5] are pending. Seek to after s[1]: s[2..5] come again.
    info = await event_log.seek_group("g", StartPosition("after_sequence", s[1]), NOW + 7)
    assert (info.delivered_sequence, info.pending_count, info.lag) == (s[1], 0, 4)
    assert info.last_active == NOW + 7
    assert await event_log.ack_leases("g", leases(got[3:4])) == []
    replay = (await event_log.fetch("g", "b", 10, 30.0, NOW + 8)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in replay] == [(q, 1) for q in s[2:]]
    assert await event_log.list_dead_letters("g", 0, 10) == []  # s[4] is pending again


async def test_seek_to_a_time_earliest_and_latest(event_log: EventLog) -> None:
    s = await group_with(event_log, 4)
    await event_log.ack_leases(
        "g", leases((await event_log.fetch("g", "a", 4, 30.0, NOW)).deliveries())
    )
    await event_log.seek_group("g", StartPosition("from_time", from_time=1002.0), NOW)
    assert (await event_log.fetch("g", "a", 9, 30.0, NOW)).sequences == s[2:]
    await event_log.seek_group("g", StartPosition("earliest"), NOW)
    info = await event_log.group_info("g")
    assert info is not None
    assert (info.delivered_sequence, info.pending_count) == (0, 0)
    await event_log.seek_group("g", StartPosition("latest"), NOW)
    assert (await event_log.fetch("g", "a", 9, 30.0, NOW)).deliveries() == []
    with pytest.raises(NotFoundError, match="nope"):
        await event_log.seek_group("nope", StartPosition(), NOW)


async def test_an_idle_group_expires_and_stops_holding_back_pruning(
    event_log: EventLog,
) -> None:
    await event_log.append([message(i, received=1000.0 + i) for i in range(3)])
    for name, idle in (("short", 600.0), ("kept", 600.0), ("default", DEFAULT_EXPIRE_AFTER_IDLE)):
        await event_log.create_group(
            name, EventFilter(), StartPosition(), NOW, GroupSettings(expire_after_idle=idle)
        )
    await event_log.create_group(
        "never", EventFilter(), StartPosition(), NOW, GroupSettings(expire_after_idle=0.0)
    )
    await event_log.fetch("short", "a", 1, 30.0, NOW)
    assert await event_log.expire_groups(NOW + 599) == []
    await event_log.touch_groups(["kept"], NOW + 599)
    assert await event_log.expire_groups(NOW + 600) == ["short"]
    assert await event_log.expire_groups(NOW + 7 * DAY) == ["default", "kept"]
    assert [g.name for g in await event_log.list_groups("", 10)] == ["never"]
    assert await event_log.expire_groups(NOW + 3650 * DAY) == []
    await event_log.delete_group("never")
    assert await event_log.prune(2000.0) == 3


async def test_leases_and_dead_letters_survive_a_restart(opened: Opened) -> None:
    log = await opened.open()
    s = await group_with(log, 2, settings=GroupSettings(max_delivery_attempts=1))
    got = (await log.fetch("g", "a", 2, 30.0, NOW)).deliveries()
    await log.dead_letter("g", leases(got[:1]), "poison", NOW)
    await log.close()
    again = await opened.open()
    assert await again.ack_leases("g", leases(got[1:])) == [s[1]]
    [dead] = await again.list_dead_letters("g", 0, 5)
    assert (dead.event.sequence, dead.error) == (s[0], "poison")
    info = await again.group_info("g")
    assert info is not None
    assert info.settings.max_delivery_attempts == 1
