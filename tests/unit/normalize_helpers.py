"""Helpers shared by the normaliser unit tests: wrap values in a webhook body, pick events."""

from __future__ import annotations

import json
from typing import Any

from wahook.core.normalize import normalize
from wahook.v1 import event_pb2

E = event_pb2
META = {"display_phone_number": "15550100001", "phone_number_id": "200000000000001"}


def wrap(value: Any, field: str = "messages", **entry: Any) -> bytes:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "100000000000001", **entry, "changes": [{"field": field, "value": value}]}
        ],
    }
    return json.dumps(doc).encode()


def messages(*items: Any, contacts: Any = None) -> list[event_pb2.Event]:
    value: dict[str, Any] = {"metadata": META, "messages": list(items)}
    if contacts is not None:
        value["contacts"] = contacts
    return normalize(wrap(value), 1764000100.0)


def msg(type_name: str, content: Any = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"from": "15550101001", "id": "wamid.X1", "type": type_name, **extra}
    if content is not None:
        item[type_name] = content
    return item


def only(events: list[event_pb2.Event]) -> event_pb2.Event:
    assert len(events) == 1, events
    return events[0]


def reason(events: list[event_pb2.Event]) -> str:
    event = only(events)
    assert event.type == E.EVENT_TYPE_MALFORMED
    return event.malformed.reason
