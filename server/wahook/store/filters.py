"""Event filters, described once: ``COLUMNS`` names each filter column (the EventFilter
field, the event's value, the SQLite column, the Redis stream entry field), and every
form of filtering is made from it: the Python matcher, the SQL of the SQLite log, the Lua
table the Redis scripts match with, the Redis entry matcher, and the canonical text a
consumer group's filter is stored and compared as. tests/contract/test_filters.py checks
both backends against ``matches`` over random events and filters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wahook.store.base import EventFilter
from wahook.v1 import event_pb2

Value = int | str | None


def message_type_of(event: event_pb2.Event) -> str | None:
    """Meta's type string of a message or message-echo event; None for other events
    (they never match a ``message_types`` filter)."""
    payload = event.WhichOneof("payload")
    if payload == "message":
        return event.message.type_name
    if payload == "message_echo":
        return event.message_echo.message.type_name
    return None


@dataclass(frozen=True)
class Column:
    """One filter column. ``name``: the EventFilter field (and wahook.v1.EventFilter's,
    and the key in the canonical text); ``value``: the event's value (None: the event has
    none and matches no non-empty set); ``sql``: the events table's column (NULL for
    None); ``field``: the Redis stream entry's field (absent for None); ``parse``: a
    value from the canonical text."""

    name: str
    value: Callable[[event_pb2.Event], Value]
    sql: str
    field: str
    parse: Callable[[Any], int | str]


COLUMNS: tuple[Column, ...] = (
    Column("event_types", lambda e: int(e.type), "type", "t", int),
    Column("message_types", message_type_of, "message_type", "m", str),
    Column("phone_number_ids", lambda e: e.phone_number_id, "phone_number_id", "p", str),
    Column("waba_ids", lambda e: e.waba_id, "waba_id", "w", str),
)


def values_of(event: event_pb2.Event) -> tuple[Value, Value, Value, Value]:
    """The event's value of each column, in ``COLUMNS`` order (what a backend stores):
    the columns' getters in one call, on every append (a call per column's getter cost
    ~6,400 instructions per POST more); tests/unit/test_store_filters.py checks that it
    gives what the getters give."""
    payload = event.WhichOneof("payload")
    if payload == "message":
        message_type: str | None = event.message.type_name
    elif payload == "message_echo":
        message_type = event.message_echo.message.type_name
    else:
        message_type = None
    return int(event.type), message_type, event.phone_number_id, event.waba_id


def _sets(flt: EventFilter) -> list[tuple[Column, frozenset[int] | frozenset[str]]]:
    """The filter's non-empty sets with their columns."""
    return [(c, s) for c in COLUMNS if (s := getattr(flt, c.name))]


def matches(flt: EventFilter, event: event_pb2.Event) -> bool:
    """Whether ``event`` passes ``flt``: every non-empty set must contain the event's value."""
    return all(c.value(event) in values for c, values in _sets(flt))


def filter_sql(flt: EventFilter) -> tuple[str, list[object]]:
    """`` AND ...`` clauses selecting ``flt`` on the SQLite events table, and their
    parameters (``NULL IN (...)`` is not true: None matches nothing)."""
    clauses: list[str] = []
    params: list[object] = []
    for c, values in _sets(flt):
        clauses.append(f" AND {c.sql} IN ({','.join('?' * len(values))})")
        params.extend(sorted(values))
    return "".join(clauses), params


def entry_matcher(flt: EventFilter) -> Callable[[Mapping[bytes, bytes]], bool]:
    """``matches`` on a Redis stream entry's fields, without parsing the event."""
    wanted = [(c.field.encode(), {str(v).encode() for v in s}) for c, s in _sets(flt)]

    def match(fields: Mapping[bytes, bytes]) -> bool:
        return all(fields.get(field) in values for field, values in wanted)

    return match


def redis_arg(value: Value) -> str:
    """A column value as an APPEND script argument: ``=`` and the value, '' for None (so
    an empty string stays a value)."""
    return "" if value is None else f"={value}"


def lua_columns() -> str:
    """The Lua table the Redis scripts store and match the columns with: per column, its
    key in the canonical filter text and its stream entry field (lua/filter.lua)."""
    pairs = ",".join(f"{{'{c.name}','{c.field}'}}" for c in COLUMNS)
    return f"local FILTER_COLUMNS = {{{pairs}}}\n"


def from_proto(pb: event_pb2.EventFilter) -> EventFilter:
    """The store's filter for a ``wahook.v1.EventFilter`` (values are not validated here)."""
    return _filter(lambda c: getattr(pb, c.name))


def to_proto(flt: EventFilter) -> event_pb2.EventFilter:
    """The ``wahook.v1.EventFilter`` for a store filter, each list sorted."""
    return event_pb2.EventFilter(**{c.name: sorted(getattr(flt, c.name)) for c in COLUMNS})


def canonical(flt: EventFilter) -> str:
    """A stable text for ``flt``: equal filters give equal text whatever the order their
    values came in, so a group's stored filter can be compared with a subscriber's."""
    return json.dumps(
        {c.name: sorted(getattr(flt, c.name)) for c in COLUMNS},
        separators=(",", ":"),
        sort_keys=True,
    )


def parse_canonical(text: str) -> EventFilter:
    """The filter ``canonical`` wrote."""
    data = json.loads(text)
    return _filter(lambda c: data[c.name])


def _filter(values: Callable[[Column], Iterable[Any]]) -> EventFilter:
    """The filter whose sets hold ``values(column)``, each parsed."""
    sets: dict[str, Any] = {c.name: frozenset(c.parse(v) for v in values(c)) for c in COLUMNS}
    return EventFilter(**sets)
