"""Conversions between the gRPC messages (wahook.v1) and the store's types, and the
validation of request fields. Every InvalidArgumentError here names the field."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from wahook.errors import InvalidArgumentError
from wahook.store import filters
from wahook.store.base import (
    DEFAULT_EXPIRE_AFTER_IDLE,
    DEFAULT_GROUP_SETTINGS,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    DeadLetter,
    Delivery,
    EncodedBatch,
    EventFilter,
    GroupInfo,
    GroupSettings,
    Lease,
    StartPosition,
    StatusRecord,
)
from wahook.v1 import event_pb2, service_pb2

MAX_GROUP_NAME = 128
MAX_CONSUMER_NAME = 128
MAX_IN_FLIGHT = 100_000
DEFAULT_IN_FLIGHT = 1000
MAX_BATCH = 4096
DEFAULT_BATCH = 256
DEFAULT_ACK_DEADLINE = 30.0
MIN_ACK_DEADLINE = 1.0
MAX_ACK_DEADLINE = 3600.0
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_DELIVERY_ATTEMPTS = 1000
MIN_EXPIRE_AFTER_IDLE = 600.0
MAX_EXPIRE_AFTER_IDLE = 366 * 86400.0
# gRPC's default maximum receive message size: what a subscriber accepts unless it says.
DEFAULT_RECEIVE_BYTES = 4 * 1024 * 1024
MAX_NACK_ERROR = 1024
NACKED = "nacked by the subscriber"
_ACK_ID_RE = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")
# Sequences are uint64 on the wire and SQLite INTEGERs (signed 64-bit) in the log: a
# larger one is refused here, not met as an overflow (INTERNAL) in the store.
MAX_SEQUENCE = 2**63 - 1
# Ids (event, message, group) longer than this are refused: echoing a megabyte id in a
# NOT_FOUND message broke the status ("metadata exceeds limit").
MAX_ID_LENGTH = 512

_GROUP_RE = re.compile(r"[A-Za-z0-9._-]+")
_EVENT_TYPES = frozenset(event_pb2.EventType.values())
_TOKEN_PREFIX = "seq:"  # noqa: S105 - a page token, not a secret


@dataclass(frozen=True)
class SubscribeSettings:
    """A validated SubscribeOptions, defaults applied."""

    group: str
    consumer_name: str
    start: StartPosition
    filter: EventFilter
    max_in_flight: int
    ack_deadline: float
    max_batch_size: int
    group_settings: GroupSettings = DEFAULT_GROUP_SETTINGS
    max_receive_bytes: int = DEFAULT_RECEIVE_BYTES


def check_sequence(value: int, name: str) -> int:
    """``value`` if it is a sequence the log can hold; else INVALID_ARGUMENT naming ``name``."""
    if value > MAX_SEQUENCE:
        raise InvalidArgumentError(f"{name} must be at most {MAX_SEQUENCE} (got {value})")
    return value


def check_sequences(values: Sequence[int], name: str) -> None:
    if values and max(values) > MAX_SEQUENCE:
        raise InvalidArgumentError(f"{name}: every sequence must be at most {MAX_SEQUENCE}")


def check_id(value: str, name: str) -> str:
    """``value`` if it is present and not absurdly long; else INVALID_ARGUMENT."""
    if not value:
        raise InvalidArgumentError(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return value


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    whole = int(seconds // 1)
    ts.seconds = whole
    ts.nanos = min(round((seconds - whole) * 1e9), 999_999_999)
    return ts


def seconds_of(duration: duration_pb2.Duration, name: str) -> float:
    if not (-999_999_999 <= duration.nanos <= 999_999_999):
        raise InvalidArgumentError(f"{name}.nanos is out of range")
    return duration.seconds + duration.nanos / 1e9


def parse_filter(pb: event_pb2.EventFilter, name: str) -> EventFilter:
    """The store filter for ``pb``; an unknown EventType value is an error, not a no-op."""
    for i, value in enumerate(pb.event_types):
        if value not in _EVENT_TYPES:
            raise InvalidArgumentError(f"{name}.event_types[{i}]: unknown EventType value {value}")
    return filters.from_proto(pb)


def parse_start(pb: service_pb2.StartPosition, name: str) -> StartPosition:
    which = pb.WhichOneof("position")
    if which == "latest":
        return StartPosition(kind="latest")
    if which == "after_sequence":
        after = check_sequence(pb.after_sequence, f"{name}.after_sequence")
        return StartPosition(kind="after_sequence", after_sequence=after)
    if which == "from_time":
        if not (0 <= pb.from_time.nanos <= 999_999_999):
            raise InvalidArgumentError(f"{name}.from_time.nanos is out of range")
        return StartPosition(
            kind="from_time", from_time=pb.from_time.seconds + pb.from_time.nanos / 1e9
        )
    return StartPosition(kind="earliest")


def parse_subscribe_options(request: service_pb2.SubscribeRequest) -> SubscribeSettings:
    """Validate the first request of a Subscribe stream."""
    if not request.HasField("options"):
        raise InvalidArgumentError("options: the first request of a stream must carry options")
    o = request.options
    group = o.consumer_group
    if not group:
        raise InvalidArgumentError("options.consumer_group is required")
    if len(group) > MAX_GROUP_NAME:
        raise InvalidArgumentError(
            f"options.consumer_group is longer than {MAX_GROUP_NAME} characters"
        )
    if not _GROUP_RE.fullmatch(group):
        raise InvalidArgumentError("options.consumer_group may only contain A-Z a-z 0-9 . _ -")
    if len(o.consumer_name) > MAX_CONSUMER_NAME or not o.consumer_name.isprintable():
        raise InvalidArgumentError(
            f"options.consumer_name must be at most {MAX_CONSUMER_NAME} printable characters"
        )
    if o.max_in_flight > MAX_IN_FLIGHT:
        raise InvalidArgumentError(
            f"options.max_in_flight must be at most {MAX_IN_FLIGHT} (got {o.max_in_flight})"
        )
    if o.max_batch_size > MAX_BATCH:
        raise InvalidArgumentError(
            f"options.max_batch_size must be at most {MAX_BATCH} (got {o.max_batch_size})"
        )
    ack_deadline = DEFAULT_ACK_DEADLINE
    if o.HasField("ack_deadline"):
        ack_deadline = seconds_of(o.ack_deadline, "options.ack_deadline")
        if not (MIN_ACK_DEADLINE <= ack_deadline <= MAX_ACK_DEADLINE):
            raise InvalidArgumentError(
                f"options.ack_deadline must be between 1s and 1h (got {ack_deadline:g}s)"
            )
    return SubscribeSettings(
        group=group,
        consumer_name=o.consumer_name,
        start=parse_start(o.start, "options.start"),
        filter=parse_filter(o.filter, "options.filter"),
        max_in_flight=o.max_in_flight or DEFAULT_IN_FLIGHT,
        ack_deadline=ack_deadline,
        max_batch_size=o.max_batch_size or DEFAULT_BATCH,
        group_settings=_group_settings(o),
        max_receive_bytes=o.max_receive_bytes or DEFAULT_RECEIVE_BYTES,
    )


def _group_settings(o: service_pb2.SubscribeOptions) -> GroupSettings:
    attempts = o.max_delivery_attempts or DEFAULT_MAX_DELIVERY_ATTEMPTS
    if attempts > MAX_DELIVERY_ATTEMPTS:
        raise InvalidArgumentError(
            f"options.max_delivery_attempts must be at most {MAX_DELIVERY_ATTEMPTS}"
            f" (got {attempts})"
        )
    expire = DEFAULT_EXPIRE_AFTER_IDLE
    if o.HasField("expire_after_idle"):
        expire = seconds_of(o.expire_after_idle, "options.expire_after_idle")
        if expire != 0 and not (MIN_EXPIRE_AFTER_IDLE <= expire <= MAX_EXPIRE_AFTER_IDLE):
            raise InvalidArgumentError(
                "options.expire_after_idle must be 0s (never) or between 10 minutes and"
                f" 366 days (got {expire:g}s)"
            )
    return GroupSettings(max_delivery_attempts=attempts, expire_after_idle=expire)


def ack_id(sequence: int, lease: int) -> str:
    """The opaque ``Delivery.ack_id`` of one delivery (see ``store.base.Lease``)."""
    return f"{sequence}-{lease}"


def parse_ack_id(text: str, name: str) -> Lease:
    match = _ACK_ID_RE.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(f"{name}: {text[:64]!r} is not an ack id this server issued")
    seq, lease = int(match[1]), int(match[2])
    if seq > MAX_SEQUENCE or lease > MAX_SEQUENCE:
        raise InvalidArgumentError(f"{name}: {text[:64]!r} is not an ack id this server issued")
    return seq, lease


def parse_nack_error(text: str, name: str) -> str:
    if len(text) > MAX_NACK_ERROR:
        raise InvalidArgumentError(f"{name} is longer than {MAX_NACK_ERROR} characters")
    return text or NACKED


def delivery(d: Delivery) -> service_pb2.Delivery:
    return service_pb2.Delivery(
        event=d.event,
        attempt=d.attempt,
        ack_deadline=timestamp(d.deadline),
        ack_id=ack_id(d.event.sequence, d.lease),
    )


def dead_letter(d: DeadLetter) -> service_pb2.DeadLetter:
    return service_pb2.DeadLetter(
        event=d.event,
        attempts=d.attempts,
        last_error=d.error,
        dead_letter_time=timestamp(d.dead_at),
    )


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def consumer_group(info: GroupInfo, connected: int) -> service_pb2.ConsumerGroup:
    return service_pb2.ConsumerGroup(
        name=info.name,
        filter=filters.to_proto(info.filter),
        delivered_sequence=info.delivered_sequence,
        pending_count=info.pending_count,
        lag=info.lag,
        head_sequence=info.head_sequence,
        create_time=timestamp(info.created_at),
        connected_subscribers=connected,
        max_delivery_attempts=info.settings.max_delivery_attempts,
        expire_after_idle=duration(info.settings.expire_after_idle),
        dead_letter_count=info.dead_letter_count,
        last_active_time=timestamp(info.last_active),
    )


def message_status(record: StatusRecord) -> service_pb2.GetMessageStatusResponse:
    response = service_pb2.GetMessageStatusResponse(
        message_id=record.message_id,
        state=record.state,  # type: ignore[arg-type]
        recipient_id=record.recipient_id,
        errors=record.errors,
        history=[
            service_pb2.StatusTransition(
                state=h.state,  # type: ignore[arg-type]
                occurred_time=timestamp(h.occurred_at),
                event_id=h.event_id,
                applied=h.applied,
            )
            for h in record.history
        ],
    )
    if record.state_time:
        response.state_time.CopyFrom(timestamp(record.state_time))
    return response


def page_token(last_sequence: int) -> str:
    """An opaque token for the page after ``last_sequence``."""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{last_sequence}".encode()).decode()


def parse_page_token(token: str) -> int:
    """The last sequence of the previous page; 0 for an empty token."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    number = text.removeprefix(_TOKEN_PREFIX)
    if (
        not text.startswith(_TOKEN_PREFIX)
        or not number.isdigit()
        or len(number) > 19
        or int(number) > MAX_SEQUENCE
    ):
        raise InvalidArgumentError("page_token is not a token this server issued")
    return int(number)


def name_token(last_name: str) -> str:
    """An opaque token for the page of groups after ``last_name``."""
    return base64.urlsafe_b64encode(f"name:{last_name}".encode()).decode()


def parse_name_token(token: str) -> str:
    """The last group name of the previous page; '' for an empty token."""
    if not token:
        return ""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    if not text.startswith("name:"):
        raise InvalidArgumentError("page_token is not a token this server issued")
    return text.removeprefix("name:")


# -- SubscribeResponse on the wire ---------------------------------------------------------
#
# A catch-up response carries hundreds of events. Building it as a message would copy
# every Event into its Delivery (protobuf has no move) and serialise it all again;
# writing the wire format directly splices the stored Event bytes in, and each response
# is ONE join of small pieces around them (no per-event intermediate bytes, which would
# copy every event twice more). The bytes parse as a normal SubscribeResponse (a test
# checks the round trip); field numbers come from the descriptors, not constants.


def _tag(message: Any, field: str, wire_type: int) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number
    return varint((number << 3) | wire_type)


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    # The common cases first: attempts and small lengths, event lengths (< 16384),
    # sequences (< 2**28: 268 million events).
    if value < 0x4000:
        return _SMALL[value]
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes(
            (
                (value & 0x7F) | 0x80,
                ((value >> 7) & 0x7F) | 0x80,
                ((value >> 14) & 0x7F) | 0x80,
                value >> 21,
            )
        )
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Every varint below 16384 (one or two bytes), built once: lengths and attempts are
# looked up instead of computed, twice per delivery (~0.5 MiB).
_SMALL = [bytes((i,)) for i in range(0x80)] + [
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, 0x4000)
]
_LEN, _VARINT = 2, 0
_DELIVERY_EVENT = _tag(service_pb2.Delivery, "event", _LEN)
_DELIVERY_ATTEMPT = _tag(service_pb2.Delivery, "attempt", _VARINT)
_DELIVERY_DEADLINE = _tag(service_pb2.Delivery, "ack_deadline", _LEN)
_DELIVERY_ACK_ID = _tag(service_pb2.Delivery, "ack_id", _LEN)
_RESPONSE_DELIVERY = _tag(service_pb2.SubscribeResponse, "deliveries", _LEN)
_RESPONSE_TIME = _tag(service_pb2.SubscribeResponse, "server_time", _LEN)
_RESPONSE_HEAD = _tag(service_pb2.SubscribeResponse, "head_sequence", _VARINT)
_EVENT_SEQUENCE = _tag(event_pb2.Event, "sequence", _VARINT)
_MEDIA_CHUNK = _tag(service_pb2.DownloadMediaResponse, "chunk", _LEN)


def media_chunk_response(data: bytes) -> bytes:
    """A serialised ``DownloadMediaResponse(chunk=data)``. One copy of the bytes instead of
    a message's two (construct, serialise); see wahook.media.CHUNK_SIZE."""
    return b"".join((_MEDIA_CHUNK, varint(len(data)), data))


def response_overhead() -> int:
    """More than a SubscribeResponse of one delivery adds to its event's bytes (tags,
    lengths, sequence, attempt, deadline, ack id, server time, head): an event that fits
    in ``limit - response_overhead()`` bytes fits in a response of ``limit``."""
    return 256


def confirmation_response(
    confirmation: service_pb2.LeaseConfirmation, server_time: float, head: int
) -> service_pb2.SubscribeResponse:
    return service_pb2.SubscribeResponse(
        server_time=timestamp(server_time), head_sequence=head, confirmation=confirmation
    )


def encode_responses(
    batch: EncodedBatch, *, server_time: float, head: int, max_count: int, max_bytes: int
) -> list[bytes]:
    """The batch as serialised SubscribeResponses in order, each of at most ``max_count``
    deliveries and split earlier where one would pass ``max_bytes`` (a single larger
    delivery still goes, alone: the caller keeps those over what the subscriber accepts
    out, see ``response_overhead``)."""
    ts = timestamp(batch.deadline).SerializeToString()
    deadline = _DELIVERY_DEADLINE + varint(len(ts)) + ts
    st = timestamp(server_time).SerializeToString()
    trailer = _RESPONSE_TIME + varint(len(st)) + st + _RESPONSE_HEAD + varint(head)
    suffixes: dict[int, bytes] = {}  # attempt -> the Delivery fields after the event
    small = _SMALL
    lease = b"-%d" % batch.lease  # every ack id of the batch ends so (see ack_id)
    responses: list[bytes] = []
    parts: list[bytes] = []
    count = size = 0
    for seq, attempt, data in zip(batch.sequences, batch.attempts, batch.events, strict=True):
        suffix = suffixes.get(attempt)
        if suffix is None:
            suffix = suffixes[attempt] = _DELIVERY_ATTEMPT + varint(attempt) + deadline
        # A scalar field repeated later in the bytes wins when parsed: appending the
        # sequence sets it whether or not the stored bytes carried one.
        seq_field = _EVENT_SEQUENCE + varint(seq)
        ack = b"%d" % seq + lease
        ack_field = _DELIVERY_ACK_ID + small[len(ack)] + ack
        event_len = len(data) + len(seq_field)
        event_len_v = small[event_len] if event_len < 0x4000 else varint(event_len)
        body_len = (
            len(_DELIVERY_EVENT) + len(event_len_v) + event_len + len(suffix) + len(ack_field)
        )
        body_len_v = small[body_len] if body_len < 0x4000 else varint(body_len)
        item = len(_RESPONSE_DELIVERY) + len(body_len_v) + body_len
        if count and (count >= max_count or size + item > max_bytes):
            parts.append(trailer)
            responses.append(b"".join(parts))
            parts, count, size = [], 0, 0
        parts += (_RESPONSE_DELIVERY, body_len_v, _DELIVERY_EVENT, event_len_v, data, seq_field)
        parts += (suffix, ack_field)
        count += 1
        size += item
    parts.append(trailer)
    responses.append(b"".join(parts))
    return responses
