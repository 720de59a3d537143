"""Property tests: any input gives events or PayloadError; ids survive re-batching.

Settings are modest (about 200 examples each, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wahook.commands.jsonout import event_to_json
from wahook.core.jsonutil import digest, dumps
from wahook.core.normalize import normalize
from wahook.errors import PayloadError
from wahook.v1 import event_pb2

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURES = {
    p.stem: json.loads(p.read_bytes())
    for p in sorted(DATA.glob("*.json"))
    if not p.name.endswith(".expected.json")
}
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["1764000000", "text", "messages", "wamid.A", "", "read", "-1", "1e3"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "type", "text", "from", "timestamp", "value", "x"])
            | st.text(max_size=6),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


def check(body: bytes, *, light: bool = False) -> list[event_pb2.Event]:
    """normalize() either returns events that serialise, or raises PayloadError.

    ``light`` skips the (slow) JSON mapping of each event but still checks what it
    could trip on: timestamps within google.protobuf.Timestamp's range.
    """
    try:
        events = normalize(body, 1764000100.0)
    except PayloadError:
        return []
    for event in events:
        assert event.id.startswith("evt_")
        event.SerializeToString()
        if light:
            assert 0 <= event.occurred_time.seconds <= 253402300799
        else:
            json.loads(event_to_json(event))
            json.loads(event.raw_json)
    return events


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes(body: bytes) -> None:
    check(body)


@SETTINGS
@given(json_values)
def test_any_json_value(value: Any) -> None:
    check(json.dumps(value).encode())


@SETTINGS
@given(json_values, st.sampled_from(sorted({"messages", "statuses", "contacts", "history"})))
def test_any_json_in_whatsapp_shape(value: Any, key: str) -> None:
    for field in ("messages", "smb_message_echoes", "user_preferences", "history", "flows"):
        doc = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": field, "value": {key: value}}]}],
        }
        check(json.dumps(doc).encode())
        doc["entry"][0]["changes"][0]["value"] = {key: [value]}
        check(json.dumps(doc).encode())
    check(json.dumps({"object": "whatsapp_business_account", "entry": value}).encode())


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a JSON document, depth first."""
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _slots(node[key], out)
    elif isinstance(node, list):
        for index in range(len(node)):
            out.append((node, index))
            _slots(node[index], out)
    return out


@SETTINGS
@given(st.sampled_from(sorted(FIXTURES)), st.data())
def test_mutated_fixtures(name: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(FIXTURES[name])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        slots = _slots(doc, [])
        if not slots:
            break
        container, key = slots[data.draw(st.integers(min_value=0, max_value=len(slots) - 1))]
        operation = data.draw(st.sampled_from(["drop", "replace", "junk", "retype"]))
        if operation == "drop":
            del container[key]
        elif operation == "replace":
            container[key] = data.draw(json_values)
        elif operation == "junk" and isinstance(container, dict):
            container[data.draw(st.text(max_size=8))] = data.draw(json_values)
        elif operation == "junk":
            container.insert(key, data.draw(json_values))
        else:
            old = container[key]
            container[key] = (
                str(old)
                if not isinstance(old, str)
                else data.draw(st.sampled_from([0, [], {}, None]))
            )
    check(json.dumps(doc).encode())


EDGE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    2**63,
    -(2**63) - 1,
    2**64,
    10**12,
    253402300800,
    1e300,
    "",
    "x",
    "-5",
    "1764000000.5",
    "\u0661\u0662",
    "9" * 30,
    [],
    [1],
    {},
    {"a": 1},
]


def test_every_slot_of_every_fixture_replaced_by_each_edge_value_or_dropped() -> None:
    """Exhaustive, deterministic companion to the random mutations above."""
    checked = 0
    for name, original in FIXTURES.items():
        if name == "msg_text_4096":
            continue  # same shape as msg_text_basic; its long body only slows this down
        doc = copy.deepcopy(original)
        for container, key in _slots(doc, []):
            # Mutate in place and restore, rather than copying the document each time.
            saved = container[key]
            for value in EDGE_VALUES:
                container[key] = value
                check(json.dumps(doc).encode(), light=True)
            container[key] = saved
            if isinstance(container, dict):
                order = list(container)
                del container[key]
                check(json.dumps(doc).encode(), light=True)
                container[key] = saved
                for k in order:  # restore the key order
                    container[k] = container.pop(k)
            checked += len(EDGE_VALUES)
    assert checked > 10000


# -- ids under re-batching ------------------------------------------------------------

ITEM_KEYS = {
    "messages": ("messages", "statuses"),
    "smb_message_echoes": ("message_echoes",),
    "user_preferences": ("user_preferences",),
    "history": ("history",),
}


ENVELOPE_KEYS = ("messaging_product", "metadata")


def _units(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Split a well-formed body into single-update entries, as Meta could send them:
    each item with the envelope and the contacts that describe it, the value's errors
    with the envelope, and the keys no item consumes with the envelope."""
    for entry in doc["entry"]:
        shell = {k: v for k, v in entry.items() if k != "changes"}
        for change in entry["changes"]:
            field, value = change["field"], change["value"]
            keys = ITEM_KEYS.get(field)
            if keys is None or not any(value.get(key) for key in keys):
                yield {**shell, "changes": [change]}
                continue
            envelope = {k: v for k, v in value.items() if k in ENVELOPE_KEYS}
            units = [
                {**envelope, "contacts": value.get("contacts"), key: [item]}
                for key in keys
                for item in value.get(key) or []
            ]
            if "errors" in value:
                units.append({**envelope, "errors": value["errors"]})
            rest = [k for k in value if k not in (*keys, *ENVELOPE_KEYS, "contacts", "errors")]
            if rest:
                units.append({**envelope, **{k: value[k] for k in rest}})
            for one in units:
                yield {**shell, "changes": [{"field": field, "value": one}]}


def _splittable(doc: Any) -> bool:
    return doc.get("object") == "whatsapp_business_account" and all(
        isinstance(entry, dict)
        and isinstance(entry.get("changes"), list)
        and all(
            isinstance(change, dict)
            and isinstance(change.get("field"), str)
            and isinstance(change.get("value"), dict)
            and all(
                isinstance(change["value"].get(k, []), list)
                for k in ITEM_KEYS.get(change["field"], ())
            )
            for change in entry["changes"]
        )
        for entry in doc["entry"]
    )


SPLITTABLE = sorted(name for name, doc in FIXTURES.items() if _splittable(doc))


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    body = json.dumps({"object": "whatsapp_business_account", "entry": entries}).encode()
    return [event.id for event in normalize(body, 1.0)]


def test_most_fixtures_take_part_in_rebatching() -> None:
    assert len(SPLITTABLE) >= 40


@SETTINGS
@given(st.lists(st.sampled_from(SPLITTABLE), min_size=1, max_size=4, unique=True), st.randoms())
def test_ids_are_the_same_however_updates_are_batched(names: list[str], rnd: Any) -> None:
    original: list[str] = []
    units: list[dict[str, Any]] = []
    for name in names:
        original += _ids(FIXTURES[name]["entry"])
        units += list(_units(FIXTURES[name]))
    rnd.shuffle(units)
    # Re-batch: cut the shuffled single updates into random POSTs.
    cuts = sorted(rnd.sample(range(1, len(units)), min(len(units) - 1, rnd.randint(0, 3))))
    rebatched: list[str] = []
    for start, end in zip([0, *cuts], [*cuts, len(units)], strict=True):
        rebatched += _ids(units[start:end])
    assert sorted(rebatched) == sorted(original)
    # And all of them merged into one POST.
    assert sorted(_ids(units)) == sorted(original)


@SETTINGS
@given(json_values | st.floats(allow_nan=False))
def test_fast_encoders_match_the_stdlib(value: Any) -> None:
    # raw_json is specified as json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    # and the digest as the SHA-256 of the sorted-keys ASCII form: the C-encoder
    # shortcuts in jsonutil must produce exactly those strings.
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert digest(value) == hashlib.sha256(canonical.encode()).hexdigest()[:32]
