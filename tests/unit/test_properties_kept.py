"""Property: nothing Meta sends is dropped, whatever keys it removes, renames or adds.

Every change yields at least one event, and the raw JSON of all events of a change
together covers every key of its value. A key is covered when an event's raw_json is
an object holding that key with the same value (the whole value, or a CHANGE event's
unconsumed keys), when the key's value itself is an event's raw_json (an errors
array, a malformed element), or when each element of its array is one (the items).
The envelope is the one exception, each part checked for what it becomes: metadata
becomes every event's phone_number_id and display_phone_number, messaging_product is
always "whatsapp", and contacts[] is consumed by the change's items. A null items or
errors key holds nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_properties import FIXTURES, ITEM_KEYS, SETTINGS, json_values
from wahook.core.normalize import normalize
from wahook.v1 import event_pb2

E = event_pb2
WHATSAPP = "whatsapp_business_account"
# Names a mutation gives to a key: the ones the normaliser reads, and anything.
KEY_NAMES = sorted(
    {k for keys in ITEM_KEYS.values() for k in keys}
    | {"errors", "contacts", "metadata", "messaging_product", "event", "new_key"}
)
METADATA_KEYS = {"phone_number_id", "display_phone_number"}
FIELDS = [*sorted(ITEM_KEYS), "message_template_status_update", "flows", "future_field"]


def _changes() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(fixture, entry without changes, change) for every change with an object value."""
    out = []
    for name, doc in sorted(FIXTURES.items()):
        if doc.get("object") != WHATSAPP or not isinstance(doc.get("entry"), list):
            continue
        for entry in doc["entry"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
                continue
            shell = {k: v for k, v in entry.items() if k != "changes"}
            for change in entry["changes"]:
                if isinstance(change, dict) and isinstance(change.get("value"), dict):
                    out.append((name, shell, change))
    return out


CHANGES = _changes()


def _covered(key: str, value: dict[str, Any], field: str, events: list[Any]) -> bool:
    held = value[key]
    raws = [json.loads(event.raw_json) for event in events]
    if any(isinstance(raw, dict) and key in raw and raw[key] == held for raw in raws):
        return True
    if any(raw == held for raw in raws):
        return True
    if isinstance(held, list) and all(any(raw == item for raw in raws) for item in held):
        return True  # every item is an event's raw_json (an empty array holds nothing)
    if key == "metadata" and (held is None or set(held) <= METADATA_KEYS):
        meta = held or {}
        return all(
            event.phone_number_id == meta.get("phone_number_id", "")
            and event.display_phone_number == meta.get("display_phone_number", "")
            for event in events
        )
    if key == "messaging_product":
        return held in (None, "whatsapp")
    if key == "contacts":
        item_lists = [value.get(k) for k in ITEM_KEYS.get(field, ())]
        return held in (None, []) or any(isinstance(v, list) and v for v in item_lists)
    # A null errors or items key is Meta's "none", as an absent one.
    return held is None and (key == "errors" or key in ITEM_KEYS.get(field, ()))


def check_change(shell: dict[str, Any], change: dict[str, Any]) -> None:
    body = json.dumps({"object": WHATSAPP, "entry": [{**shell, "changes": [change]}]})
    events = normalize(body.encode(), 1764000100.0)
    assert events, f"change {change!r} vanished"
    value = change["value"]
    field = change.get("field")
    if not isinstance(field, str) or not field or not isinstance(value, dict):
        return  # the change itself is malformed: its event keeps it whole
    lost = [key for key in value if not _covered(key, value, field, events)]
    assert lost == [], f"{field}: keys {lost} of {value!r} are in no event"
    for event in events:
        if event.type == E.EVENT_TYPE_CHANGE and event.change.keys:
            raw = json.loads(event.raw_json)
            assert list(event.change.keys) == list(raw)
            assert all(raw[key] == value[key] for key in raw)


def test_every_fixture_change_keeps_every_key() -> None:
    assert len(CHANGES) >= 50
    for _, shell, change in CHANGES:
        check_change(shell, change)


@SETTINGS
@given(st.sampled_from(range(len(CHANGES))), st.data())
def test_keys_removed_renamed_or_added_are_never_dropped(index: int, data: st.DataObject) -> None:
    _, shell, original = CHANGES[index]
    change = copy.deepcopy(original)
    value: dict[str, Any] = change["value"]
    names = st.sampled_from(KEY_NAMES) | st.text(max_size=8)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        operation = data.draw(st.sampled_from(["remove", "rename", "add", "field"]))
        if operation == "field":
            change["field"] = data.draw(st.sampled_from(FIELDS))
        elif operation == "add" or not value:
            value[data.draw(names)] = data.draw(json_values)
        else:
            key = data.draw(st.sampled_from(sorted(value)))
            held = value.pop(key)
            if operation == "rename":
                value[data.draw(names)] = held
    check_change(shell, change)
