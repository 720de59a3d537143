"""Webhook body bytes → the list of ``wahook.v1.Event`` it contains, in payload order.

``normalize(body, received_at)`` walks every entry, every change and every item:
Meta batches up to 1000 updates in one POST. Only a body that is not UTF-8 JSON, or
whose top level is not an object, raises ``PayloadError``; a body for another
product (``object`` other than "whatsapp_business_account") yields no events.
Anything else that is wrong becomes an EVENT_TYPE_MALFORMED event at the level
where it went wrong (entry, change, value or item), with a precise reason, the
path, and the raw JSON; its neighbours are unaffected.

Nothing Meta sends is dropped: every change yields at least one event, and every
key of its value is either consumed by a typed event or kept in an
EVENT_TYPE_CHANGE event (keys Meta added next to the items, by themselves; a
per-item field's value that gave no event at all, whole).

Each event's ``raw_json`` is the compact JSON of what it came from: the item for
per-item events (messages, statuses, echoes, user preferences, history chunks), the
whole value for whole-value fields and unknown fields, the ``errors`` array for
value-level errors, the unconsumed keys for a per-item field's CHANGE event, and the
offending element itself for malformed events.

Ids and dedupe keys come from ``wahook.core.ids`` (see there for why they are
position-independent).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from wahook.core import ids
from wahook.core.common import ContactIndex, get_errors
from wahook.core.fields import WHOLE_VALUE_FIELDS, history_sync, user_preference
from wahook.core.jsonutil import (
    JsonObject,
    Malformed,
    describe,
    digest,
    dumps,
    get_id,
    get_list,
    get_obj,
    get_timestamp,
    parse_body,
    require_str,
)
from wahook.core.messages import parse_message
from wahook.core.statuses import parse_status
from wahook.errors import PayloadError
from wahook.v1 import event_pb2

E = event_pb2
WHATSAPP_OBJECT = "whatsapp_business_account"

# Per-item fields: the value keys holding the items. The other keys a per-item
# field's value may carry are the envelope below, consumed by every event of the
# change (metadata: phone_number_id, display_phone_number; contacts: each item's
# contact; messaging_product: always "whatsapp"), and `errors` (its own event).
# Any other key is kept in an EVENT_TYPE_CHANGE event of its own.
_ITEM_KEYS = {
    "messages": ("messages", "statuses"),
    "smb_message_echoes": ("message_echoes",),
    "user_preferences": ("user_preferences",),
    "history": ("history",),
}
_METADATA_KEYS = frozenset({"display_phone_number", "phone_number_id"})


def _unconsumed(key: str, value: Any) -> bool:
    """Whether a per-item field's value key, other than the items, errors and contacts
    (decided once the items are walked), is left to a CHANGE event."""
    if key == "metadata":
        # Consumed as long as it holds only what the envelope keeps.
        return value is not None and not value.keys() <= _METADATA_KEYS
    if key == "messaging_product":
        return value is not None and value != "whatsapp"
    return True


def normalize(body: bytes, received_at: float) -> list[event_pb2.Event]:
    """Parse and normalise one webhook body received at ``received_at`` (Unix seconds)."""
    doc = parse_body(body)
    if doc.__class__ is not dict:
        raise PayloadError(f"body is not a JSON object: its top level is {describe(doc)}")
    if doc.get("object") != WHATSAPP_OBJECT:
        return []
    # Split before scaling: received_at * 1e9 would lose the sub-microsecond digits.
    seconds = math.floor(received_at)
    nanos = min(round((received_at - seconds) * 1e9), 999_999_999)
    walker = _Walker(seconds, nanos)
    entries = doc.get("entry")
    if entries.__class__ is not list:
        walker.malformed(doc, "", f"entry: expected an array, got {describe(entries)}")
    else:
        for i, entry in enumerate(entries):
            walker.entry(entry, f"entry[{i}]")
    return walker.events


class _Walker:
    """Collects the events of one body; holds the envelope of the change being walked."""

    __slots__ = (
        "contacts",
        "display",
        "entry_time",
        "events",
        "field",
        "phone_number_id",
        "received_nanos",
        "received_seconds",
        "waba_id",
    )

    def __init__(self, received_seconds: int, received_nanos: int) -> None:
        # Set field by field on each event: cheaper than building a Timestamp per body
        # and copying it into each event.
        self.received_seconds = received_seconds
        self.received_nanos = received_nanos
        self.events: list[event_pb2.Event] = []
        self.waba_id = ""
        self.entry_time: int | None = None
        self.field = ""
        self.phone_number_id = ""
        self.display = ""
        self.contacts: ContactIndex | None = None

    # -- envelope ---------------------------------------------------------------

    def emit(self, event: event_pb2.Event, key: str, raw: str, occurred: int | None) -> None:
        event.id = ids.event_id(key)
        event.dedupe_key = key
        event.waba_id = self.waba_id
        event.phone_number_id = self.phone_number_id
        event.display_phone_number = self.display
        event.field = self.field
        event.raw_json = raw
        received = event.received_time
        received.seconds = self.received_seconds
        received.nanos = self.received_nanos
        if occurred is None:
            occurred = self.entry_time
        if occurred is not None:
            event.occurred_time.seconds = occurred
        self.events.append(event)

    def malformed(self, item: Any, path: str, reason: str) -> None:
        key = ids.malformed_key(self.field, self.waba_id, self.phone_number_id, digest(item))
        event = event_pb2.Event(type=E.EVENT_TYPE_MALFORMED)
        event.malformed.reason = reason
        event.malformed.path = path
        self.emit(event, key, dumps(item), None)

    # -- levels -----------------------------------------------------------------

    def entry(self, entry: Any, path: str) -> None:
        self.waba_id = self.phone_number_id = self.display = self.field = ""
        self.entry_time = None
        if entry.__class__ is not dict:
            self.malformed(entry, path, f"expected an object, got {describe(entry)}")
            return
        try:
            waba_id = get_id(entry, "id")
        except Malformed as exc:
            self.malformed(entry, path, exc.reason)
            return
        self.waba_id = waba_id  # known from here on, also for a malformed entry
        try:
            entry_time = get_timestamp(entry, "time")
            changes = get_list(entry, "changes")
        except Malformed as exc:
            self.malformed(entry, path, exc.reason)
            return
        for j, change in enumerate(changes):
            self.waba_id, self.entry_time = waba_id, entry_time
            self.phone_number_id = self.display = self.field = ""
            self.change(change, f"{path}.changes[{j}]")

    def change(self, change: Any, path: str) -> None:
        if change.__class__ is not dict:
            self.malformed(change, path, f"expected an object, got {describe(change)}")
            return
        try:
            field = require_str(change, "field")
        except Malformed as exc:
            self.malformed(change, path, exc.reason)
            return
        self.field = field
        value = change.get("value")
        if value.__class__ is not dict:
            self.malformed(change, path, f"value: expected an object, got {describe(value)}")
            return
        path += ".value"
        try:
            meta = get_obj(value, "metadata")
            if meta is not None:
                self.phone_number_id = get_id(meta, "phone_number_id", "metadata")
                self.display = get_id(meta, "display_phone_number", "metadata")
        except Malformed as exc:
            self.malformed(value, path, exc.reason)
            return
        item_keys = _ITEM_KEYS.get(field)
        if item_keys is not None:
            self.items(value, item_keys, path)
        else:
            self.whole_value(value, path)

    def whole_value(self, value: JsonObject, path: str) -> None:
        known = WHOLE_VALUE_FIELDS.get(self.field)
        if known is None:
            # A field this version does not type: keep it whole, lose nothing.
            self.untyped(value, ())
            return
        parser, attribute, event_type = known
        try:
            payload = parser(value)
        except Malformed as exc:
            self.malformed(value, path, exc.reason)
            return
        event = event_pb2.Event(type=event_type)
        getattr(event, attribute).CopyFrom(payload)
        self.emit_content(event, value)

    def untyped(self, value: JsonObject, keys: Iterable[str]) -> None:
        """An EVENT_TYPE_CHANGE event keeping ``value``: a whole value, or the keys of
        one that nothing else consumed (then ``keys`` names them)."""
        event = event_pb2.Event(type=E.EVENT_TYPE_CHANGE)
        event.change.field = self.field
        event.change.keys.extend(keys)
        self.emit_content(event, value)

    def emit_content(self, event: event_pb2.Event, value: JsonObject) -> None:
        """Emit an event whose content is its identity (it has no id of its own)."""
        key = ids.content_key(
            self.field, self.waba_id, self.phone_number_id, self.entry_time, digest(value)
        )
        self.emit(event, key, dumps(value), None)

    def items(self, value: JsonObject, item_keys: tuple[str, ...], path: str) -> None:
        first = len(self.events)
        contacts = value.get("contacts")
        if contacts is None:
            self.contacts = None
        elif contacts.__class__ is list:
            self.contacts = ContactIndex(contacts, path + ".contacts")
        else:
            # Items can still be normalised, only without their contact.
            self.contacts = None
            self.malformed(
                contacts, path + ".contacts", f"expected an array, got {describe(contacts)}"
            )
        has_items = False
        rest: list[str] = []  # keys no event consumes, kept by a CHANGE event
        # Walk the value's keys in payload order so events keep Meta's order.
        for key in value:
            if key in item_keys:
                items = value[key]
                if items.__class__ is not list:
                    if items is not None:
                        self.malformed(
                            items, f"{path}.{key}", f"expected an array, got {describe(items)}"
                        )
                    continue
                for k, item in enumerate(items):
                    self.item(key, item, path, k)
                has_items = has_items or bool(items)
            elif key == "errors":
                if value[key] is not None:
                    self.value_errors(value, path)
            elif key != "contacts" and _unconsumed(key, value[key]):
                rest.append(key)
        if not has_items and contacts.__class__ is list and contacts:
            # contacts[] describes the items' users; with no item to carry them
            # (e.g. Meta renamed the items' key), the contacts are kept as they are.
            rest.append("contacts")
        if rest:
            # Only the unconsumed keys, so that their event is the same however
            # Meta batches the items beside them.
            kept = {key: value[key] for key in value if key in rest}
            self.untyped(kept, kept)
        elif len(self.events) == first:
            # Nothing Meta sends may vanish: a change that gave no event (e.g.
            # "messages": []) keeps its whole value.
            self.untyped(value, ())

    def value_errors(self, value: JsonObject, path: str) -> None:
        # Errors Meta reports for the whole change (e.g. an outage for this number)
        # come with no message or status to hang them on: they get their own event.
        errors = value["errors"]
        event = event_pb2.Event(type=E.EVENT_TYPE_VALUE_ERRORS)
        try:
            event.value_errors.errors.extend(get_errors(value, "errors"))
        except Malformed as exc:
            self.malformed(errors, path + ".errors", exc.reason)
            return
        event.value_errors.SetInParent()
        key = ids.content_key(
            "value_errors:" + self.field,
            self.waba_id,
            self.phone_number_id,
            self.entry_time,
            digest(errors),
        )
        self.emit(event, key, dumps(errors), None)

    def item(self, kind: str, item: Any, path: str, k: int) -> None:
        if item.__class__ is not dict:
            self.malformed(item, f"{path}.{kind}[{k}]", f"expected an object, got {describe(item)}")
            return
        event = event_pb2.Event()
        pnid = self.phone_number_id
        try:
            occurred = get_timestamp(item, "timestamp")
            if kind == "messages":
                event.type = E.EVENT_TYPE_MESSAGE
                key = ids.message_key(pnid, parse_message(event.message, item, self.contacts))
            elif kind == "statuses":
                event.type = E.EVENT_TYPE_STATUS
                wamid, name, recipient, recipient_user, participant = parse_status(
                    event.status, item, self.contacts
                )
                key = ids.status_key(
                    pnid,
                    wamid,
                    status=name,
                    timestamp=occurred,
                    recipient_id=recipient,
                    recipient_user_id=recipient_user,
                    participant_id=participant,
                )
            elif kind == "message_echoes":
                event.type = E.EVENT_TYPE_MESSAGE_ECHO
                wamid = parse_message(event.message_echo.message, item, self.contacts, echo=True)
                key = ids.echo_key(pnid, wamid)
            else:
                if kind == "user_preferences":
                    event.type = E.EVENT_TYPE_USER_PREFERENCE
                    event.user_preference.CopyFrom(user_preference(item, self.contacts))
                else:  # history
                    event.type = E.EVENT_TYPE_HISTORY_SYNC
                    event.history_sync.CopyFrom(history_sync(item))
                key = ids.content_key(self.field, self.waba_id, pnid, self.entry_time, digest(item))
        except Malformed as exc:
            self.malformed(item, f"{path}.{kind}[{k}]", exc.reason)
            return
        self.emit(event, key, dumps(item), occurred)
