"""Event filters: matching an event, converting between the proto and the store's
dataclass, and the canonical text a consumer group's filter is stored and compared as."""

from __future__ import annotations

import json

from wahook.store.base import EventFilter
from wahook.v1 import event_pb2

_MESSAGE = event_pb2.EVENT_TYPE_MESSAGE
_ECHO = event_pb2.EVENT_TYPE_MESSAGE_ECHO


def message_type_of(event: event_pb2.Event) -> str | None:
    """Meta's type string of a message or message-echo event; None for other events
    (they never match a ``message_types`` filter)."""
    payload = event.WhichOneof("payload")
    if payload == "message":
        return event.message.type_name
    if payload == "message_echo":
        return event.message_echo.message.type_name
    return None


def matches(flt: EventFilter, event: event_pb2.Event) -> bool:
    """Whether ``event`` passes ``flt``: every non-empty set must contain the event's value."""
    if flt.event_types and event.type not in flt.event_types:
        return False
    if flt.message_types and message_type_of(event) not in flt.message_types:
        return False
    if flt.phone_number_ids and event.phone_number_id not in flt.phone_number_ids:
        return False
    return not (flt.waba_ids and event.waba_id not in flt.waba_ids)


def from_proto(pb: event_pb2.EventFilter) -> EventFilter:
    """The store's filter for a ``wahook.v1.EventFilter`` (values are not validated here)."""
    return EventFilter(
        event_types=frozenset(int(t) for t in pb.event_types),
        message_types=frozenset(pb.message_types),
        phone_number_ids=frozenset(pb.phone_number_ids),
        waba_ids=frozenset(pb.waba_ids),
    )


def to_proto(flt: EventFilter) -> event_pb2.EventFilter:
    """The ``wahook.v1.EventFilter`` for a store filter, each list sorted."""
    return event_pb2.EventFilter(
        event_types=sorted(flt.event_types),  # type: ignore[arg-type]
        message_types=sorted(flt.message_types),
        phone_number_ids=sorted(flt.phone_number_ids),
        waba_ids=sorted(flt.waba_ids),
    )


def canonical(flt: EventFilter) -> str:
    """A stable text for ``flt``: equal filters give equal text whatever the order their
    values came in, so a group's stored filter can be compared with a subscriber's."""
    return json.dumps(
        {
            "event_types": sorted(flt.event_types),
            "message_types": sorted(flt.message_types),
            "phone_number_ids": sorted(flt.phone_number_ids),
            "waba_ids": sorted(flt.waba_ids),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def parse_canonical(text: str) -> EventFilter:
    """The filter ``canonical`` wrote."""
    data = json.loads(text)
    return EventFilter(
        event_types=frozenset(int(t) for t in data["event_types"]),
        message_types=frozenset(str(t) for t in data["message_types"]),
        phone_number_ids=frozenset(str(t) for t in data["phone_number_ids"]),
        waba_ids=frozenset(str(t) for t in data["waba_ids"]),
    )
