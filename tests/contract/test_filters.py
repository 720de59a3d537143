"""Both backends filter as store.filters.matches does (the Python reading of the one
description of the filter columns, store.filters.COLUMNS): random events and filters,
through ListEvents' filtering (SQL on SQLite, the entry matcher on Redis) and a group's
fetch (SQL; the FETCH script's Lua). Seeded, so a failure repeats."""

from __future__ import annotations

import random

import pytest
from wahook.store import filters
from wahook.store.base import EventFilter, EventLog, StartPosition
from wahook.v1 import account_pb2, event_pb2, message_pb2

NOW = 1_800_000_000.0
KINDS = ("message", "echo", "status", "change")
TYPE_NAMES = ("text", "image", "")  # '' is a value too: it matches only ''
PHONES = ("15550100001", "15550100002", "")
WABAS = ("15550100900", "15550100901")
EVENT_TYPES = (
    event_pb2.EVENT_TYPE_MESSAGE,
    event_pb2.EVENT_TYPE_MESSAGE_ECHO,
    event_pb2.EVENT_TYPE_STATUS,
    event_pb2.EVENT_TYPE_CHANGE,
    event_pb2.EVENT_TYPE_MALFORMED,
)


def random_event(rng: random.Random, n: int) -> event_pb2.Event:
    e = event_pb2.Event(
        id=f"evt_{n:032x}",
        dedupe_key=f"filter-test:{n}",
        phone_number_id=rng.choice(PHONES),
        waba_id=rng.choice(WABAS),
        received_time={"seconds": 1_700_000_000 + n},
    )
    kind = rng.choice(KINDS)
    type_name = rng.choice(TYPE_NAMES)
    if kind == "message":
        e.type = event_pb2.EVENT_TYPE_MESSAGE
        e.message.CopyFrom(message_pb2.Message(id=f"wamid.F{n}", type_name=type_name))
    elif kind == "echo":
        e.type = event_pb2.EVENT_TYPE_MESSAGE_ECHO
        e.message_echo.message.CopyFrom(message_pb2.Message(type_name=type_name))
    elif kind == "status":
        e.type = event_pb2.EVENT_TYPE_STATUS
        e.status.id = f"wamid.OUT{n}"
    else:
        e.type = event_pb2.EVENT_TYPE_CHANGE
        e.change.CopyFrom(account_pb2.Change(field="security"))
    return e


def some(rng: random.Random, domain: tuple[object, ...], extra: object) -> frozenset:  # type: ignore[type-arg]
    """Empty half the time, else a random non-empty subset of the domain and a value
    no event has."""
    if rng.random() < 0.5:
        return frozenset()
    pool = [*domain, extra]
    return frozenset(rng.sample(pool, rng.randint(1, len(pool))))


def random_filter(rng: random.Random) -> EventFilter:
    return EventFilter(
        event_types=some(rng, EVENT_TYPES, event_pb2.EVENT_TYPE_UNSPECIFIED),
        message_types=some(rng, TYPE_NAMES, "sticker"),
        phone_number_ids=some(rng, PHONES, "15550100009"),
        waba_ids=some(rng, WABAS, "15550100909"),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_backends_filter_as_the_python_matcher(event_log: EventLog, seed: int) -> None:
    rng = random.Random(seed)
    events = [random_event(rng, n) for n in range(60)]
    sequences = (await event_log.append(events)).sequences
    flts = [EventFilter(), *(random_filter(rng) for _ in range(15))]
    matched_some = 0
    for i, flt in enumerate(flts):
        expected = [s for s, e in zip(sequences, events, strict=True) if filters.matches(flt, e)]
        matched_some += 0 < len(expected) < len(events)
        listed = await event_log.list_events(flt, 0, 0, 1000)
        assert [e.sequence for e in listed] == expected, flt
        await event_log.create_group(f"g{i}", flt, StartPosition(), NOW)
        fetched = await event_log.fetch(f"g{i}", "c", 1000, 30.0, NOW)
        assert fetched.sequences == expected, flt
    assert matched_some >= 3  # the filters told events apart, not all or nothing


def test_every_filter_column_is_an_event_filter_field_and_a_proto_field() -> None:
    names = [c.name for c in filters.COLUMNS]
    assert names == list(EventFilter.__dataclass_fields__)
    assert names == [f.name for f in event_pb2.EventFilter.DESCRIPTOR.fields]
