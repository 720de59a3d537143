"""The EventLog contract: what every storage backend must do, run against each of them.

Times passed as ``now`` are made up (the log never reads the clock for decisions), so
deadlines are tested without sleeping.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import PHONE_ID, WABA_ID, Backend, Opened, message, status
from wahook.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    LogUnavailableError,
    NotFoundError,
)
from wahook.store.base import EventFilter, EventLog, StartPosition
from wahook.v1 import event_pb2, status_pb2

NOW = 1_800_000_000.0
MESSAGES = EventFilter(event_types=frozenset({event_pb2.EVENT_TYPE_MESSAGE}))


async def seqs_of(log: EventLog, group: str, consumer: str, n: int, now: float = NOW) -> list[int]:
    return (await log.fetch(group, consumer, n, 30.0, now)).sequences


# -- append, durability, dedupe ------------------------------------------------------------


async def test_append_assigns_increasing_sequences_without_mutating_input(
    event_log: EventLog,
) -> None:
    events = [message(i) for i in range(3)]
    result = await event_log.append(events)
    assert result.new_count == 3
    assert result.sequences == sorted(result.sequences)
    assert len(set(result.sequences)) == 3
    assert all(e.sequence == 0 for e in events)
    stored = await event_log.get(events[1].id)
    assert stored is not None
    assert stored.sequence == result.sequences[1]
    stored.sequence = 0
    assert stored == events[1]
    assert await event_log.head_sequence() == result.sequences[-1]


async def test_get_unknown_id_is_none(event_log: EventLog) -> None:
    assert await event_log.get("evt_nothing") is None
    assert await event_log.head_sequence() == 0


async def test_appended_events_survive_close_and_reopen(opened: Opened) -> None:
    log = await opened.open()
    result = await log.append([message(1), message(2)])
    await log.close()
    again = await opened.open()
    stored = await again.get(message(2).id)
    assert stored is not None
    assert stored.sequence == result.sequences[1]
    assert await again.head_sequence() == result.sequences[1]


async def test_duplicate_is_not_stored_again(event_log: EventLog) -> None:
    first = await event_log.append([message(1), message(2)])
    again = await event_log.append([message(2), message(3), message(1)])
    assert again.new_count == 1
    assert again.sequences[0] == first.sequences[1]
    assert again.sequences[2] == first.sequences[0]
    assert len(await event_log.list_events(EventFilter(), 0, 0, 100)) == 3


async def test_duplicate_within_one_append_is_stored_once(event_log: EventLog) -> None:
    result = await event_log.append([message(1), message(1)])
    assert result.new_count == 1
    assert result.sequences[0] == result.sequences[1]


async def test_concurrent_duplicates_are_stored_once(event_log: EventLog) -> None:
    results = await asyncio.gather(*(event_log.append([message(7)]) for _ in range(50)))
    assert sum(r.new_count for r in results) == 1
    assert len({r.sequences[0] for r in results}) == 1


async def test_duplicates_racing_on_two_instances_are_stored_once(opened: Opened) -> None:
    a, b = await opened.open(), await opened.open()
    batch = [message(i) for i in range(20)]
    results = await asyncio.gather(
        *(log.append(batch[i:] + batch[:i]) for i in range(10) for log in (a, b))
    )
    assert sum(r.new_count for r in results) == 20
    assert len(await a.list_events(EventFilter(), 0, 0, 100)) == 20
    assert [e.id for e in await b.list_events(EventFilter(), 0, 0, 100)] == [
        e.id for e in await a.list_events(EventFilter(), 0, 0, 100)
    ]


async def test_event_without_dedupe_key_is_rejected(event_log: EventLog) -> None:
    bad = message(1)
    bad.dedupe_key = ""
    with pytest.raises(InvalidArgumentError, match="dedupe_key"):
        await event_log.append([message(2), bad])
    assert await event_log.head_sequence() == 0


async def test_group_commit_batches_concurrent_appends(backend: Backend, opened: Opened) -> None:
    log = await opened.open()
    await log.append([message(0)])
    before = backend.commits(log)
    if before is None:
        pytest.skip("this backend does not batch appends into commits")
    results = await asyncio.gather(*(log.append([message(i)]) for i in range(1, 101)))
    after = backend.commits(log)
    assert after is not None
    commits = after - before
    assert sum(r.new_count for r in results) == 100
    # One request per commit would be 100; the writer shares commits between them.
    assert commits <= 10, commits
    print(f"100 concurrent appends -> {commits} commits")


# -- the forward-only status record ---------------------------------------------------------

S = status_pb2


async def test_status_moves_forward_only_and_keeps_history(event_log: EventLog) -> None:
    wamid = "wamid.OUT000001"
    await event_log.append([status(1, wamid, S.DELIVERY_STATE_SENT, 100)])
    await event_log.append([status(2, wamid, S.DELIVERY_STATE_READ, 300)])
    late = status(3, wamid, S.DELIVERY_STATE_DELIVERED, 200)
    await event_log.append([late])
    record = await event_log.message_status(wamid)
    assert record is not None
    assert record.state == S.DELIVERY_STATE_READ
    assert record.state_time == 300
    assert record.recipient_id == "15550105678"
    assert [(h.state, h.occurred_at, h.applied) for h in record.history] == [
        (S.DELIVERY_STATE_SENT, 100, True),
        (S.DELIVERY_STATE_READ, 300, True),
        (S.DELIVERY_STATE_DELIVERED, 200, False),
    ]
    assert record.history[2].event_id == late.id
    # A redelivered status (same dedupe key) adds no history.
    await event_log.append([late])
    again = await event_log.message_status(wamid)
    assert again is not None
    assert len(again.history) == 3


async def test_failed_is_final_and_keeps_its_errors(event_log: EventLog) -> None:
    wamid = "wamid.OUT000002"
    await event_log.append(
        [
            status(1, wamid, S.DELIVERY_STATE_SENT, 100),
            status(2, wamid, S.DELIVERY_STATE_FAILED, 150, errors=[(131047, "Re-engage")]),
            status(3, wamid, S.DELIVERY_STATE_DELIVERED, 160),
        ]
    )
    record = await event_log.message_status(wamid)
    assert record is not None
    assert record.state == S.DELIVERY_STATE_FAILED
    assert record.state_time == 150
    assert [(e.code, e.title) for e in record.errors] == [(131047, "Re-engage")]
    assert [h.applied for h in record.history] == [True, True, False]


async def test_status_of_unknown_message_is_none(event_log: EventLog) -> None:
    await event_log.append([message(1)])
    assert await event_log.message_status("wamid.NOPE") is None


# -- consumer groups ------------------------------------------------------------------------


async def test_start_positions(event_log: EventLog) -> None:
    first = await event_log.append([message(i, received=1000.0 + i) for i in range(1, 6)])
    s = first.sequences
    earliest = await event_log.create_group("g-earliest", EventFilter(), StartPosition(), NOW)
    latest = await event_log.create_group(
        "g-latest", EventFilter(), StartPosition(kind="latest"), NOW
    )
    after = await event_log.create_group(
        "g-after", EventFilter(), StartPosition(kind="after_sequence", after_sequence=s[2]), NOW
    )
    from_time = await event_log.create_group(
        "g-time", EventFilter(), StartPosition(kind="from_time", from_time=1003.0), NOW
    )
    assert earliest.lag == 5
    assert latest.lag == 0
    more = await event_log.append([message(6, received=1006.0)])
    assert await seqs_of(event_log, "g-earliest", "c", 100) == [*s, more.sequences[0]]
    assert await seqs_of(event_log, "g-latest", "c", 100) == more.sequences
    assert await seqs_of(event_log, "g-after", "c", 100) == [s[3], s[4], more.sequences[0]]
    assert await seqs_of(event_log, "g-time", "c", 100) == [s[2], s[3], s[4], more.sequences[0]]
    assert from_time.name == "g-time"
    assert after.delivered_sequence == s[2]


async def test_start_position_applies_only_when_the_group_is_new(event_log: EventLog) -> None:
    s = (await event_log.append([message(1), message(2)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    again = await event_log.create_group("g", EventFilter(), StartPosition(kind="latest"), NOW + 1)
    assert again.created_at == NOW
    assert await seqs_of(event_log, "g", "c", 10) == s


async def test_filter_skips_non_matching_events_for_good(event_log: EventLog) -> None:
    s = (
        await event_log.append(
            [
                message(1),
                status(2, "wamid.OUT1", S.DELIVERY_STATE_SENT, 1),
                message(3, phone_number_id="15550100002"),
                message(4, type_name="image"),
                status(5, "wamid.OUT2", S.DELIVERY_STATE_SENT, 1),
            ]
        )
    ).sequences
    await event_log.create_group("msgs", MESSAGES, StartPosition(), NOW)
    assert await seqs_of(event_log, "msgs", "c", 100) == [s[0], s[2], s[3]]
    info = await event_log.group_info("msgs")
    assert info is not None
    assert (info.delivered_sequence, info.lag, info.pending_count) == (s[4], 0, 3)
    assert info.filter == MESSAGES

    narrow = EventFilter(message_types=frozenset({"image"}), phone_number_ids=frozenset({PHONE_ID}))
    await event_log.create_group("images", narrow, StartPosition(), NOW)
    assert await seqs_of(event_log, "images", "c", 100) == [s[3]]
    await event_log.create_group(
        "other-waba", EventFilter(waba_ids=frozenset({"15550100999"})), StartPosition(), NOW
    )
    assert await seqs_of(event_log, "other-waba", "c", 100) == []
    waba = await event_log.create_group(
        "waba", EventFilter(waba_ids=frozenset({WABA_ID})), StartPosition(), NOW
    )
    assert waba.lag == 5


async def test_filter_conflict_is_a_failed_precondition(event_log: EventLog) -> None:
    await event_log.create_group("g", MESSAGES, StartPosition(), NOW)
    with pytest.raises(FailedPreconditionError, match="filter"):
        await event_log.create_group(
            "g", EventFilter(waba_ids=frozenset({WABA_ID})), StartPosition(), NOW
        )
    same = EventFilter(event_types=frozenset({event_pb2.EVENT_TYPE_MESSAGE}))
    assert (await event_log.create_group("g", same, StartPosition(), NOW)).filter == MESSAGES
    assert (
        await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    ).filter == MESSAGES


async def test_fetch_in_chunks_then_ack(event_log: EventLog) -> None:
    s = (await event_log.append([message(i) for i in range(5)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    fetched = await event_log.fetch("g", "c", 3, 30.0, NOW)
    batch = fetched.deliveries()
    assert [(d.event.sequence, d.attempt, d.deadline) for d in batch] == [
        (q, 1, NOW + 30.0) for q in s[:3]
    ]
    assert batch[0].event.id == message(0).id
    assert await seqs_of(event_log, "g", "c", 3) == s[3:]
    held = [(q, fetched.lease) for q in (s[0], s[1], 999_999)]
    assert sorted(await event_log.ack_leases("g", held)) == [s[0], s[1]]
    assert await event_log.ack_leases("g", held[:1]) == []
    info = await event_log.group_info("g")
    assert info is not None
    assert (info.pending_count, info.lag, info.head_sequence) == (3, 0, s[4])
    assert (await event_log.fetch("g", "c", 10, 30.0, NOW)).deliveries() == []


async def test_acks_of_long_runs_remove_exactly_what_they_name(event_log: EventLog) -> None:
    s = (await event_log.append([message(i) for i in range(40)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    lease_of: dict[int, int] = {}
    for consumer, n in (("a", 10), ("b", 10), ("a", 20)):
        batch = await event_log.fetch("g", consumer, n, 30.0, NOW)
        lease_of.update(dict.fromkeys(batch.sequences, batch.lease))
    assert sorted(lease_of) == s
    # Consecutive runs (acked as ranges) spanning another consumer's pending events,
    # out of order, with repeats and unknown sequences.
    acked = [*reversed(s[:10]), *s[20:38], s[5], 10**9, 10**9 + 1]
    held = [(q, lease_of.get(q, 1)) for q in acked]
    assert sorted(await event_log.ack_leases("g", held)) == [*s[:10], *s[20:38]]
    assert await event_log.ack_leases("g", held[:10]) == []
    info = await event_log.group_info("g")
    assert info is not None
    assert info.pending_count == 12
    redelivered = (await event_log.fetch("g", "c", 100, 30.0, NOW + 31)).deliveries()
    assert [d.event.sequence for d in redelivered] == [*s[10:20], *s[38:]]
    assert {d.attempt for d in redelivered} == {2}


async def test_unacked_event_comes_again_after_its_deadline(event_log: EventLog) -> None:
    s = (await event_log.append([message(1), message(2)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    first = await event_log.fetch("g", "c1", 10, 10.0, NOW)
    await event_log.ack_leases("g", [(s[1], first.lease)])
    assert (await event_log.fetch("g", "c1", 10, 10.0, NOW + 9.9)).deliveries() == []
    again = (await event_log.fetch("g", "c2", 10, 10.0, NOW + 10.0)).deliveries()
    assert [(d.event.sequence, d.attempt, d.deadline) for d in again] == [(s[0], 2, NOW + 20.0)]
    third = (await event_log.fetch("g", "c2", 10, 10.0, NOW + 25.0)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in third] == [(s[0], 3)]


async def test_a_shorter_ack_deadline_of_another_stream_still_expires_on_time(
    event_log: EventLog,
) -> None:
    s = (await event_log.append([message(i) for i in range(4)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    assert (await event_log.fetch("g", "slow", 2, 60.0, NOW)).sequences == s[:2]
    assert (await event_log.fetch("g", "fast", 1, 10.0, NOW)).sequences == [s[2]]
    got = (await event_log.fetch("g", "c", 1, 100.0, NOW + 10)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in got] == [(s[2], 2)]
    got = (await event_log.fetch("g", "c", 10, 30.0, NOW + 60)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in got] == [(s[0], 2), (s[1], 2), (s[3], 1)]


async def test_due_entries_beyond_one_fetch_come_in_the_next(event_log: EventLog) -> None:
    s = (await event_log.append([message(i) for i in range(5)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    await event_log.fetch("g", "c", 5, 10.0, NOW)
    later = NOW + 11
    chunks = [await seqs_of(event_log, "g", "c2", 2, later) for _ in range(4)]
    assert chunks == [s[:2], s[2:4], s[4:], []]
    info = await event_log.group_info("g")
    assert info is not None
    assert info.pending_count == 5


async def test_redeliveries_come_before_new_events(event_log: EventLog) -> None:
    s = (await event_log.append([message(1), message(2)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    await event_log.fetch("g", "c", 1, 5.0, NOW)
    got = (await event_log.fetch("g", "c", 1, 5.0, NOW + 6)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in got] == [(s[0], 2)]


async def test_nack_redelivers_after_the_delay(event_log: EventLog) -> None:
    s = (await event_log.append([message(1), message(2)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    lease = (await event_log.fetch("g", "c", 10, 30.0, NOW)).lease
    assert await event_log.nack_leases("g", [(s[0], lease)], NOW + 5, "busy") == [s[0]]
    assert await event_log.nack_leases("g", [(s[0] + 1000, lease)], NOW, "busy") == []
    assert await event_log.nack_leases("g", [(s[1], lease)], NOW, "busy") == [s[1]]
    now_batch = (await event_log.fetch("g", "c", 10, 30.0, NOW + 1)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in now_batch] == [(s[1], 2)]
    # The nacking consumer's stream ends: the delay still holds.
    # The consumer's stream ends: s[1] (redelivered to it) is due again at once, while
    # the nacked s[0] keeps its delay.
    assert await event_log.release("g", "c", NOW + 2) == 1
    at_release = (await event_log.fetch("g", "c2", 10, 30.0, NOW + 2)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in at_release] == [(s[1], 3)]
    later = (await event_log.fetch("g", "c2", 10, 30.0, NOW + 5)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in later] == [(s[0], 2)]


async def test_nack_delay_survives_release(event_log: EventLog) -> None:
    s = (await event_log.append([message(1)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    lease = (await event_log.fetch("g", "c", 10, 30.0, NOW)).lease
    await event_log.nack_leases("g", [(q, lease) for q in s], NOW + 5, "busy")
    assert await event_log.release("g", "c", NOW + 1) == 0
    assert (await event_log.fetch("g", "c2", 10, 30.0, NOW + 1)).deliveries() == []
    assert await seqs_of(event_log, "g", "c2", 10, NOW + 5) == s


async def test_release_hands_a_closed_streams_events_to_another_consumer(
    event_log: EventLog,
) -> None:
    s = (await event_log.append([message(i) for i in range(4)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    await event_log.fetch("g", "a", 2, 30.0, NOW)
    await event_log.fetch("g", "b", 1, 30.0, NOW)
    assert await event_log.release("g", "a", NOW + 1) == 2
    got = (await event_log.fetch("g", "c", 10, 30.0, NOW + 1)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in got] == [(s[0], 2), (s[1], 2), (s[3], 1)]
    assert await event_log.release("g", "a", NOW + 1) == 0


async def test_two_groups_are_independent(event_log: EventLog) -> None:
    s = (await event_log.append([message(i) for i in range(3)])).sequences
    await event_log.create_group("one", EventFilter(), StartPosition(), NOW)
    await event_log.create_group("two", EventFilter(), StartPosition(), NOW)
    fetched = await event_log.fetch("one", "c", 10, 30.0, NOW)
    assert fetched.sequences == s
    await event_log.ack_leases("one", [(q, fetched.lease) for q in s])
    assert await seqs_of(event_log, "two", "c", 10) == s
    one, two = await event_log.group_info("one"), await event_log.group_info("two")
    assert one is not None
    assert two is not None
    assert (one.pending_count, two.pending_count) == (0, 3)


async def test_consumers_of_one_group_share_without_duplicates(event_log: EventLog) -> None:
    s = (await event_log.append([message(i) for i in range(50)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    async def consume(name: str) -> None:
        while batch := await seqs_of(event_log, "g", name, 4):
            got[name].extend(batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(consume(n) for n in got))
    everything = got["a"] + got["b"] + got["c"]
    assert sorted(everything) == s
    assert all(got.values())


async def test_group_resumes_after_restart(opened: Opened) -> None:
    log = await opened.open()
    s = (await log.append([message(i) for i in range(6)])).sequences
    await log.create_group("g", MESSAGES, StartPosition(), NOW)
    lease = (await log.fetch("g", "c", 3, 30.0, NOW)).lease
    await log.ack_leases("g", [(q, lease) for q in s[:2]])
    await log.close()

    log = await opened.open()
    info = await log.group_info("g")
    assert info is not None
    assert (info.delivered_sequence, info.pending_count, info.filter) == (s[2], 1, MESSAGES)
    assert await seqs_of(log, "g", "c2", 10) == s[3:]
    got = (await log.fetch("g", "c2", 10, 30.0, NOW + 31)).deliveries()
    assert [(d.event.sequence, d.attempt) for d in got] == [(q, 2) for q in s[2:]]


async def test_unknown_group(event_log: EventLog) -> None:
    assert await event_log.group_info("nope") is None
    with pytest.raises(NotFoundError, match="nope"):
        await event_log.fetch("nope", "c", 1, 30.0, NOW)


# -- retention ------------------------------------------------------------------------------


async def test_prune_keeps_what_a_group_still_needs(event_log: EventLog) -> None:
    s = (await event_log.append([message(i, received=1000.0 + i) for i in range(10)])).sequences
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    lease = (await event_log.fetch("g", "c", 6, 30.0, NOW)).lease
    await event_log.ack_leases("g", [(q, lease) for q in s[:6] if q != s[2]])
    # Older than 1008: s[0..7]; the group has passed s[0..5]; s[2] is still pending.
    assert await event_log.prune(1008.0) == 5
    remaining = [e.sequence for e in await event_log.list_events(EventFilter(), 0, 0, 100)]
    assert remaining == [s[2], *s[6:]]
    assert await event_log.get(message(2).id) is not None
    assert await event_log.get(message(1).id) is None


async def test_prune_without_groups_and_sequences_never_reused(event_log: EventLog) -> None:
    s = (await event_log.append([message(i, received=1000.0 + i) for i in range(3)])).sequences
    assert await event_log.prune(2000.0) == 3
    assert await event_log.list_events(EventFilter(), 0, 0, 100) == []
    assert await event_log.head_sequence() == s[-1]
    assert (await event_log.append([message(9)])).sequences[0] > s[-1]


async def test_prune_takes_status_history_with_its_events(event_log: EventLog) -> None:
    a, b = "wamid.OUT000010", "wamid.OUT000011"
    await event_log.append(
        [status(1, a, S.DELIVERY_STATE_SENT, 100), status(2, b, S.DELIVERY_STATE_SENT, 100)]
    )
    await event_log.append([status(3, a, S.DELIVERY_STATE_READ, 300), message(4)])
    # Received at 1_700_000_000 + n: statuses 1 and 2 are older than the cut, 3 and 4 not.
    assert await event_log.prune(1_700_000_003.0) == 2
    record = await event_log.message_status(a)
    assert record is not None
    assert (record.state, record.state_time) == (S.DELIVERY_STATE_READ, 300)
    assert [(h.state, h.occurred_at) for h in record.history] == [(S.DELIVERY_STATE_READ, 300)]
    # b's only status event is gone: so is its record, and a new status starts afresh.
    assert await event_log.message_status(b) is None
    await event_log.append([status(5, b, S.DELIVERY_STATE_DELIVERED, 500)])
    again = await event_log.message_status(b)
    assert again is not None
    assert [(h.state, h.applied) for h in again.history] == [(S.DELIVERY_STATE_DELIVERED, True)]


# -- reads ----------------------------------------------------------------------------------


async def test_list_events_filters_ranges_and_limits(event_log: EventLog) -> None:
    s = (
        await event_log.append(
            [
                message(1),
                status(2, "wamid.OUT1", S.DELIVERY_STATE_SENT, 1),
                message(3),
                message(4),
                message(5),
            ]
        )
    ).sequences
    listed = await event_log.list_events(MESSAGES, 0, 0, 100)
    assert [e.sequence for e in listed] == [s[0], s[2], s[3], s[4]]
    assert listed[1].id == message(3).id
    assert [e.sequence for e in await event_log.list_events(MESSAGES, s[0], s[3], 100)] == [
        s[2],
        s[3],
    ]
    assert [e.sequence for e in await event_log.list_events(EventFilter(), 0, 0, 2)] == s[:2]


async def test_wait_for_append_wakes_on_append(event_log: EventLog) -> None:
    head = await event_log.head_sequence()
    waiter = asyncio.create_task(event_log.wait_for_append(head, 600.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await event_log.append([message(1)])
    # Woken by the append: its own timeout is 10 minutes away.
    assert await asyncio.wait_for(waiter, 60) is True
    assert await event_log.wait_for_append(head, 10.0) is True
    assert await event_log.wait_for_append(head + 1, 0.05) is False


async def test_check_writable_and_closed_log(opened: Opened) -> None:
    log = await opened.open()
    await log.check_writable()
    await log.close()
    with pytest.raises(LogUnavailableError):
        await log.append([message(1)])
    with pytest.raises(LogUnavailableError):
        await log.get("evt_1")
    with pytest.raises(LogUnavailableError):
        await log.check_writable()


async def test_empty_ack_and_nack_are_no_ops(event_log: EventLog) -> None:
    await event_log.create_group("g", EventFilter(), StartPosition(), NOW)
    assert await event_log.ack_leases("g", []) == []
    assert await event_log.nack_leases("g", [], NOW, "busy") == []


async def test_a_start_past_the_head_is_kept(event_log: EventLog) -> None:
    s = (await event_log.append([message(1)])).sequences
    start = StartPosition(kind="after_sequence", after_sequence=s[0] + 3)
    await event_log.create_group("future", EventFilter(), start, NOW)
    assert (await event_log.fetch("future", "c", 10, 30.0, NOW)).deliveries() == []
    more = (await event_log.append([message(i) for i in range(2, 8)])).sequences
    assert await seqs_of(event_log, "future", "c", 10) == [q for q in more if q > s[0] + 3]
