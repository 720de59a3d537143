"""Events as one-line JSON in the protobuf JSON mapping (used by `wahook normalize` and `tail`)."""

from __future__ import annotations

import json

from google.protobuf.json_format import MessageToDict

from wahook.v1 import event_pb2


def event_to_json(event: event_pb2.Event) -> str:
    """One line, camelCase field names, enum names, non-ASCII text kept as-is."""
    return json.dumps(MessageToDict(event), ensure_ascii=False, separators=(",", ":"))
