"""filters.matches agrees with the SQLite backend's SQL for every combination of a small
domain (tests/contract/test_filters.py checks both backends on random ones), and the
proto/canonical conversions."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from wahook.store import filters
from wahook.store.base import EventFilter
from wahook.store.sqlite import SqliteEventLog
from wahook.v1 import account_pb2, event_pb2, message_pb2

M, S, E, C = (
    event_pb2.EVENT_TYPE_MESSAGE,
    event_pb2.EVENT_TYPE_STATUS,
    event_pb2.EVENT_TYPE_MESSAGE_ECHO,
    event_pb2.EVENT_TYPE_CHANGE,
)


def events() -> list[event_pb2.Event]:
    out = []
    combos = itertools.product(
        ("message", "status", "echo", "change"),
        ("text", "image"),
        ("15550100001", "15550100002"),
        ("15550100900", "15550100901"),
    )
    for n, (kind, mtype, phone, waba) in enumerate(combos):
        e = event_pb2.Event(
            id=f"evt_{n:032x}",
            dedupe_key=f"k:{n}",
            phone_number_id=phone,
            waba_id=waba,
        )
        if kind == "message":
            e.type = M
            e.message.CopyFrom(message_pb2.Message(id=f"wamid.F{n}", type_name=mtype))
        elif kind == "echo":
            e.type = E
            e.message_echo.message.CopyFrom(message_pb2.Message(type_name=mtype))
        elif kind == "status":
            e.type = S
            e.status.id = f"wamid.OUT{n}"
        else:
            e.type = C
            e.change.CopyFrom(account_pb2.Change(field="security"))
        out.append(e)
    return out


FILTERS = [
    EventFilter(),
    EventFilter(event_types=frozenset({M})),
    EventFilter(event_types=frozenset({S, C})),
    EventFilter(event_types=frozenset({event_pb2.EVENT_TYPE_UNSPECIFIED})),
    EventFilter(message_types=frozenset({"image"})),
    EventFilter(message_types=frozenset({"text"}), event_types=frozenset({E})),
    EventFilter(phone_number_ids=frozenset({"15550100002"})),
    EventFilter(waba_ids=frozenset({"15550100900"}), phone_number_ids=frozenset({"15550100001"})),
    EventFilter(
        event_types=frozenset({M, E}),
        message_types=frozenset({"text", "image"}),
        phone_number_ids=frozenset({"15550100001", "15550100002"}),
        waba_ids=frozenset({"15550100901"}),
    ),
]


async def test_matches_agrees_with_sql_filtering(tmp_path: Path) -> None:
    log = await SqliteEventLog.open(tmp_path / "events.sqlite3")
    try:
        stored = [e.id for e in events()]
        await log.append(events())
        for flt in FILTERS:
            by_sql = [e.id for e in await log.list_events(flt, 0, 0, 1000)]
            by_python = [e.id for e in events() if filters.matches(flt, e)]
            assert by_sql == by_python, flt
            assert set(by_python) <= set(stored)
        assert len([e for e in events() if filters.matches(FILTERS[4], e)]) == 8
    finally:
        await log.close()


def test_values_of_gives_each_columns_value_in_order() -> None:
    for e in events():
        assert filters.values_of(e) == tuple(c.value(e) for c in filters.COLUMNS)


@pytest.mark.parametrize("flt", FILTERS)
def test_conversions_round_trip(flt: EventFilter) -> None:
    assert filters.from_proto(filters.to_proto(flt)) == flt
    assert filters.parse_canonical(filters.canonical(flt)) == flt


def test_canonical_ignores_order() -> None:
    a = event_pb2.EventFilter(event_types=[S, M], waba_ids=["2", "1", "2"])
    b = event_pb2.EventFilter(event_types=[M, S], waba_ids=["1", "2"])
    assert filters.canonical(filters.from_proto(a)) == filters.canonical(filters.from_proto(b))
