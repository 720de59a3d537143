"""Request validation helpers and the hand-written SubscribeResponse wire encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rpc_support import message, running
from wahook.errors import InvalidArgumentError
from wahook.rpc import convert
from wahook.store.base import Delivery, EncodedBatch, GroupSettings
from wahook.v1 import service_pb2


@pytest.mark.parametrize(
    "value",
    [0, 1, 127, 128, 300, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35, 2**64 - 1],
)
def test_varint_matches_protobuf(value: int) -> None:
    encoded = service_pb2.SubscribeResponse(head_sequence=value).SerializeToString()
    if value:
        assert encoded == b"\x18" + convert.varint(value)
    assert (
        service_pb2.SubscribeResponse.FromString(b"\x18" + convert.varint(value)).head_sequence
        == value
    )


def encoded_batch(deliveries: list[Delivery], deadline: float, head: int) -> EncodedBatch:
    """Parsed deliveries as the batch a fetch returns (the stored bytes re-serialised)."""
    return EncodedBatch(
        [d.event.sequence for d in deliveries],
        [d.attempt for d in deliveries],
        [d.event.SerializeToString() for d in deliveries],
        deadline,
        head,
        deliveries[0].lease if deliveries else 0,
    )


def test_encoded_response_parses_as_the_message_it_stands_for() -> None:
    events = [message(i) for i in range(5)]
    for i, event in enumerate(events):
        event.sequence = 100 + i
    # A long text makes one delivery's length need a multi-byte varint.
    events[2].raw_json = "x" * 20_000
    deliveries = [
        Delivery(event=e, attempt=1 + i % 3, deadline=1_800_000_000.25, lease=1_800_000_000_250)
        for i, e in enumerate(events)
    ]
    [encoded] = convert.encode_responses(
        encoded_batch(deliveries, 1_800_000_000.25, 104),
        server_time=1_800_000_000.5,
        head=104,
        max_count=10,
        max_bytes=1 << 20,
    )
    expected = service_pb2.SubscribeResponse(
        deliveries=[convert.delivery(d) for d in deliveries],
        server_time=convert.timestamp(1_800_000_000.5),
        head_sequence=104,
    )
    assert service_pb2.SubscribeResponse.FromString(encoded) == expected


def test_responses_split_by_count_and_size_and_keep_order() -> None:
    sizes = [100, 100, 100, 5000, 100, 100, 100, 100]
    stored = [message(i) for i in range(len(sizes))]
    for event, size in zip(stored, sizes, strict=True):
        event.raw_json = "z" * size
    batch = EncodedBatch(
        list(range(10, 10 + len(sizes))),
        [1, 1, 2, 1, 1, 1, 3, 1],
        [e.SerializeToString() for e in stored],
        1_800_000_000.0,
        99,
    )
    responses = [
        service_pb2.SubscribeResponse.FromString(r)
        for r in convert.encode_responses(
            batch, server_time=1.0, head=99, max_count=3, max_bytes=2_000
        )
    ]
    # Three at most; the 5000-byte event passes the cap alone and goes alone.
    assert [len(r.deliveries) for r in responses] == [3, 1, 3, 1]
    got = [d for r in responses for d in r.deliveries]
    assert [(d.event.sequence, d.attempt) for d in got] == list(
        zip(batch.sequences, batch.attempts, strict=True)
    )
    assert {d.ack_deadline.seconds for d in got} == {1_800_000_000}
    assert {r.head_sequence for r in responses} == {99}


def test_timestamp_keeps_fractions() -> None:
    ts = convert.timestamp(1_800_000_000.75)
    assert (ts.seconds, ts.nanos) == (1_800_000_000, 750_000_000)


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    assert convert.parse_page_token(convert.page_token(12345)) == 12345
    assert convert.parse_page_token("") == 0
    for bad in ("@@@", convert.page_token(1)[:-3] + "xyz", "c2VxOi0x"):  # "seq:-1"
        with pytest.raises(InvalidArgumentError, match="page_token"):
            convert.parse_page_token(bad)


def test_nack_delay_and_start_time_validation() -> None:
    with pytest.raises(InvalidArgumentError, match=r"nacks\[0\].delay.nanos"):
        convert.seconds_of(service_pb2.Nack(delay={"nanos": 2_000_000_000}).delay, "nacks[0].delay")
    options = service_pb2.SubscribeOptions(
        consumer_group="g", start={"from_time": {"seconds": 5, "nanos": -1}}
    )
    with pytest.raises(InvalidArgumentError, match=r"options.start.from_time"):
        convert.parse_subscribe_options(service_pb2.SubscribeRequest(options=options))
    ok = convert.parse_subscribe_options(
        service_pb2.SubscribeRequest(
            options={"consumer_group": "g", "start": {"from_time": {"seconds": 5}}}
        )
    )
    assert (ok.start.kind, ok.start.from_time) == ("from_time", 5.0)
    assert (ok.max_in_flight, ok.max_batch_size, ok.ack_deadline) == (1000, 256, 30.0)


def test_group_settings_and_receive_limit_validation() -> None:
    def parse(**options: object) -> convert.SubscribeSettings:
        request = service_pb2.SubscribeRequest(options={"consumer_group": "g", **options})
        return convert.parse_subscribe_options(request)

    default = parse()
    assert default.group_settings == GroupSettings(10, 7 * 86400.0)
    assert default.max_receive_bytes == 4 * 1024 * 1024
    custom = parse(max_delivery_attempts=1000, expire_after_idle={}, max_receive_bytes=9 << 20)
    assert custom.group_settings == GroupSettings(1000, 0.0)  # 0 s: never
    assert custom.max_receive_bytes == 9 << 20
    assert parse(expire_after_idle={"seconds": 600}).group_settings.expire_after_idle == 600.0
    with pytest.raises(InvalidArgumentError, match=r"options.max_delivery_attempts .* 1000"):
        parse(max_delivery_attempts=1001)
    for seconds in (5, 367 * 86400, -1):
        with pytest.raises(InvalidArgumentError, match=r"options.expire_after_idle must be 0s"):
            parse(expire_after_idle={"seconds": seconds})


def test_ack_ids_round_trip_and_reject_garbage() -> None:
    assert convert.parse_ack_id(convert.ack_id(5, 1_800_000_000_250), "x") == (
        5,
        1_800_000_000_250,
    )
    for bad in ("", "5", "5-", "-5", "a-b", "5-6-7", "\u0663-1", "1" * 20 + "-1", " 5-1"):
        with pytest.raises(InvalidArgumentError, match=r"ack_ids\[3\]: .* not an ack id"):
            convert.parse_ack_id(bad, "ack_ids[3]")
    assert convert.parse_nack_error("", "e") == "nacked by the subscriber"
    assert convert.parse_nack_error("x" * 1024, "e") == "x" * 1024
    with pytest.raises(InvalidArgumentError, match=r"nacks\[0\].error is longer than 1024"):
        convert.parse_nack_error("x" * 1025, "nacks[0].error")


def test_group_page_tokens_round_trip_and_reject_garbage() -> None:
    assert convert.parse_name_token(convert.name_token("billing.v2")) == "billing.v2"
    assert convert.parse_name_token("") == ""
    for bad in ("x", convert.page_token(5), "!!!"):
        with pytest.raises(InvalidArgumentError, match="page_token"):
            convert.parse_name_token(bad)


async def test_responses_are_split_under_the_size_cap(tmp_path: Path) -> None:
    async with running(tmp_path, max_response_bytes=2_000) as rpc:
        big = [message(i) for i in range(10)]
        for e in big:
            e.raw_json = "y" * 900
        stored = (await rpc.log.append(big)).sequences
        sub = rpc.subscribe(consumer_group="small")
        got = await sub.take(10)
        assert [d.event.sequence for d in got] == stored
        assert max(len(r.deliveries) for r in sub.responses) <= 2
        assert all(r.ByteSize() <= 2_000 + 100 for r in sub.responses)
        await sub.cancel()


def test_stored_bytes_encode_like_parsed_events() -> None:
    stored = message(3)  # as appended: sequence unset
    parsed = message(3)
    parsed.sequence = 42
    encoded = EncodedBatch([42], [2], [stored.SerializeToString()], 1_800_000_000.5, 42)
    plain = encoded_batch(
        [Delivery(event=parsed, attempt=2, deadline=1_800_000_000.5)], 1_800_000_000.5, 42
    )
    a, b = (
        service_pb2.SubscribeResponse.FromString(
            convert.encode_responses(x, server_time=1.0, head=42, max_count=5, max_bytes=9999)[0]
        )
        for x in (encoded, plain)
    )
    assert a == b
    assert a.deliveries[0].event.sequence == 42
