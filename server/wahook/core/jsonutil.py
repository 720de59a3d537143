"""JSON helpers for the normaliser: strict body parsing, compact/canonical dumps, typed getters.

The getters read one key of a JSON object and either return a Python value of the
expected type (with JSON ``null`` and a missing key both meaning "absent") or raise
``Malformed`` naming the key and what was wrong. ``Malformed`` never leaves
``wahook.core``: the normaliser turns it into an EVENT_TYPE_MALFORMED event.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from json.encoder import (  # type: ignore[attr-defined]
    c_encode_basestring,
    c_encode_basestring_ascii,
    c_make_encoder,
)
from typing import Any, NoReturn

from wahook.errors import PayloadError

JsonObject = dict[str, Any]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# google.protobuf.Timestamp cannot represent seconds after 9999-12-31T23:59:59Z;
# Meta's times are Unix seconds, so negative values are junk too.
MAX_TIMESTAMP = 253402300799

# Lone UTF-16 surrogate escapes ("\ud800" with no partner): json.loads accepts them,
# but the resulting str is not valid Unicode and cannot go in a protobuf string.
# Meta escapes every emoji as a surrogate *pair*, so surrogate escapes are common and
# the check must be cheap: a regex finds any surrogate escape at all, and only then a
# scan over escape tokens pairs highs with lows. Escaped backslashes are tokens too, so
# that the text "\\ud800" (a backslash, then "ud800") is not taken for an escape.
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE_TOKEN = re.compile(rb"\\\\|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LOW_DIGITS = frozenset(b"cdefCDEF")


def _has_lone_surrogate(body: bytes) -> bool:
    high_end = -1  # where the unpaired high surrogate escape ended, or -1
    for token in _ESCAPE_TOKEN.finditer(body):
        is_low = len(token.group()) == 6 and token.group()[3] in _LOW_DIGITS
        if high_end >= 0:
            if not (is_low and token.start() == high_end):
                return True
            high_end = -1
        elif is_low:
            return True
        elif len(token.group()) == 6:
            high_end = token.end()
    return high_end >= 0


class Malformed(Exception):
    """An item cannot be normalised; ``reason`` says which key and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON (RFC 8259) and Meta do not.
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads with any option constructs a new decoder per call, which
# costs as much as decoding a one-message body.
_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_body(body: bytes) -> Any:
    """Decode a webhook body as strict UTF-8 JSON, or raise PayloadError."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8: invalid byte at offset {exc.start}") from None
    try:
        doc = _decode(text)
    except RecursionError:
        raise PayloadError("body is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, too many digits
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if _ANY_SURROGATE.search(body) is not None and _has_lone_surrogate(body):
        raise PayloadError("body is not valid JSON text: a \\u escape is a lone UTF-16 surrogate")
    return doc


def parse_json_text(text: str) -> Any:
    """Decode JSON text found inside a payload (e.g. a Flow's response_json) with the
    same strictness as a body; None when it is not valid JSON."""
    try:
        return parse_body(text.encode("utf-8"))
    except PayloadError:
        return None


def _encoder(*, ascii_only: bool, sort_keys: bool) -> Callable[[Any], str]:
    """A compact JSON encoder built once. json.dumps with options builds a new encoder
    object per call, a third of the cost of serialising a small item; calling the C
    encoder directly also skips the Python layers around it. Inputs come from
    json.loads, so they hold only JSON types and no cycles (no markers needed)."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has _json
        return json.JSONEncoder(
            ensure_ascii=ascii_only, sort_keys=sort_keys, separators=(",", ":")
        ).encode
    encode = c_make_encoder(
        None,  # markers: no cycle detection
        None,  # default: never called, json.loads only yields JSON types
        c_encode_basestring_ascii if ascii_only else c_encode_basestring,
        None,  # indent
        ":",
        ",",
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan: 1e400 parses as inf and must round-trip somehow
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


dumps = _encoder(ascii_only=False, sort_keys=False)
dumps.__doc__ = "Compact JSON with non-ASCII text kept as-is (Event.raw_json)."
_canonical = _encoder(ascii_only=True, sort_keys=True)


def digest(value: Any) -> str:
    """First 32 hex characters of the SHA-256 of the canonical JSON of ``value``.

    Canonical: sorted keys, compact, ASCII-escaped, so the same content hashes the
    same whatever key order or escaping Meta used on the wire.
    """
    return hashlib.sha256(_canonical(value).encode("ascii")).hexdigest()[:32]


def describe(value: Any) -> str:
    """A short description of a JSON value for an error reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown, ensure_ascii=True)}"
    if isinstance(value, int | float):
        text = repr(value)
        return f"number {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, dict):
        return "an object"
    return "an array"


def is_decimal(text: str) -> bool:
    # ASCII digits only (str.isdigit also accepts e.g. Arabic-Indic digits), and short
    # enough that int() cannot hit Python's 4300-digit conversion limit.
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def fail(where: str, key: str, expected: str, got: Any) -> NoReturn:
    raise Malformed(f"{key_path(where, key)}: expected {expected}, got {describe(got)}")


def get_str(obj: JsonObject, key: str, where: str = "") -> str:
    """A string value; absent or null → ""."""
    value = obj.get(key)
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    fail(where, key, "a string", value)


def get_id(obj: JsonObject, key: str, where: str = "") -> str:
    """An identifier Meta sends as a string or sometimes as a number → its decimal string."""
    value = obj.get(key)
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if value.__class__ is int:
        return str(value)
    fail(where, key, "a string or integer id", value)


def require_id(obj: JsonObject, key: str, where: str = "") -> str:
    """Like get_id, but absent or empty is malformed."""
    value = get_id(obj, key, where)
    if not value:
        raise Malformed(f"{key_path(where, key)}: missing")
    return value


def require_str(obj: JsonObject, key: str, where: str = "") -> str:
    """Like get_str, but absent or empty is malformed."""
    value = get_str(obj, key, where)
    if not value:
        raise Malformed(f"{key_path(where, key)}: missing")
    return value


def get_bool(obj: JsonObject, key: str, where: str = "") -> bool | None:
    """A boolean; absent or null → None."""
    value = obj.get(key)
    if value is None or value.__class__ is bool:
        return value
    fail(where, key, "true or false", value)


def get_int(obj: JsonObject, key: str, where: str = "") -> int:
    """An int64 sent as a number or a decimal string; absent or null → 0."""
    value = obj.get(key)
    if value is None:
        return 0
    if value.__class__ is int:
        result: int = value
    elif (value.__class__ is str and is_decimal(value[1:] if value[:1] == "-" else value)) or (
        value.__class__ is float and value.is_integer()
    ):
        result = int(value)
    else:
        fail(where, key, "an integer", value)
    if not INT64_MIN <= result <= INT64_MAX:
        fail(where, key, "an integer within 64 bits", value)
    return result


def get_float(obj: JsonObject, key: str, where: str = "") -> float:
    """A number, or a numeric string; absent or null → 0.0."""
    value = obj.get(key)
    if value is None:
        return 0.0
    if value.__class__ is float:
        return value
    if value.__class__ is int or value.__class__ is str:
        try:
            result = float(value)
        except (OverflowError, ValueError):
            result = math.nan
        if math.isfinite(result):
            return result
    fail(where, key, "a number", value)


def get_obj(obj: JsonObject, key: str, where: str = "") -> JsonObject | None:
    """A nested object; absent or null → None."""
    value = obj.get(key)
    if value is None or value.__class__ is dict:
        return value
    fail(where, key, "an object", value)


def get_list(obj: JsonObject, key: str, where: str = "") -> list[Any]:
    """An array; absent or null → []."""
    value = obj.get(key)
    if value.__class__ is list:
        return value
    if value is None:
        return []
    fail(where, key, "an array", value)


def get_timestamp(obj: JsonObject, key: str, where: str = "") -> int | None:
    """Unix seconds. Meta sends "1764000000" (a string) in most places and a plain
    number in some; both become an int. Absent or null → None; anything else that is
    not a whole number of seconds in Timestamp's range is malformed."""
    value = obj.get(key)
    if value is None:
        return None
    # is_decimal, inline: every item has a timestamp.
    if value.__class__ is str and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        seconds = int(value)
    elif value.__class__ is int:
        seconds = value
    elif value.__class__ is float and value.is_integer():
        seconds = int(value)
    else:
        fail(where, key, "integer Unix seconds", value)
    if not 0 <= seconds <= MAX_TIMESTAMP:
        fail(where, key, "Unix seconds between 0 and 253402300799", value)
    return seconds
