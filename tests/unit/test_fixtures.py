"""Every payload in tests/data/ normalises to the events its .expected.json lists.

Each ``NAME.json`` is a webhook body written by hand from Meta's documented shapes
(made-up ids, phones 1555010xxxx); ``NAME.expected.json`` lists, per event in order,
a subset of the event's protobuf JSON mapping that must match:

- objects match when every expected key matches (extra actual keys are fine);
- arrays match element by element and must have the same length;
- ``null`` means the key must be absent (unset) in the event;
- ``dedupeKeyPrefix`` checks the start of ``dedupeKey`` (for keys ending in a hash).

On top of that every event must satisfy the envelope invariants checked below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from wahook.core.ids import event_id
from wahook.core.normalize import normalize

DATA = Path(__file__).resolve().parents[1] / "data"
RECEIVED_AT = 1764000100.5
RECEIVED_TIME = "2025-11-24T16:01:40.500Z"
PAYLOADS = sorted(p for p in DATA.glob("*.json") if not p.name.endswith(".expected.json"))


def _match(expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        problems: list[str] = []
        for key, want in expected.items():
            if key == "dedupeKeyPrefix":
                if not str(actual.get("dedupeKey", "")).startswith(want):
                    problems.append(f"{where}.dedupeKey: {actual.get('dedupeKey')!r} !^ {want!r}")
            elif want is None:
                if key in actual:
                    problems.append(f"{where}.{key}: expected absent, got {actual[key]!r}")
            elif key not in actual:
                problems.append(f"{where}.{key}: missing (expected {want!r})")
            else:
                problems += _match(want, actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} items, got {actual!r}"]
        return [p for i, w in enumerate(expected) for p in _match(w, actual[i], f"{where}[{i}]")]
    if expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def test_there_are_enough_fixtures_and_each_has_its_expectation() -> None:
    assert len(PAYLOADS) >= 40
    missing = [p.name for p in PAYLOADS if not p.with_suffix(".expected.json").exists()]
    assert missing == []


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.stem for p in PAYLOADS])
def test_fixture_normalises_to_expected_events(payload: Path) -> None:
    expected = json.loads(payload.with_suffix(".expected.json").read_text("utf-8"))
    events = normalize(payload.read_bytes(), RECEIVED_AT)
    actual = [MessageToDict(event) for event in events]
    assert len(actual) == len(expected["events"]), [a.get("dedupeKey") for a in actual]
    problems = _match(expected["events"], actual, "events")
    assert problems == [], "\n".join(problems)
    for event, mapping in zip(events, actual, strict=True):
        # Envelope invariants every event satisfies.
        assert re.fullmatch(r"evt_[0-9a-f]{32}", event.id)
        assert event.id == event_id(event.dedupe_key)
        assert mapping["receivedTime"] == RECEIVED_TIME
        assert event.sequence == 0
        assert event.WhichOneof("payload") is not None
        json.loads(event.raw_json)  # raw_json is JSON
    # The same bytes give the same events, whenever they arrive.
    again = normalize(payload.read_bytes(), RECEIVED_AT + 3600)
    assert [e.id for e in again] == [e.id for e in events]
