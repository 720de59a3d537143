"""Message-level edge cases of the normaliser: every content type's odd shapes and reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from normalize_helpers import messages, msg, only, reason
from wahook.v1 import event_pb2, message_pb2

E = event_pb2


def test_text_without_body_is_an_empty_text() -> None:
    event = only(messages(msg("text")))
    assert event.message.HasField("text")
    assert event.message.text.body == ""


def test_type_missing_is_malformed() -> None:
    assert reason(messages({"id": "wamid.X1", "from": "1"})) == "type: missing"


@pytest.mark.parametrize(
    ("item", "why"),
    [
        (
            msg("contacts", extra_contacts=1) | {"contacts": ["x"]},
            'contacts[0]: expected an object, got string "x"',
        ),
        (
            msg("contacts") | {"contacts": [{"phones": [1]}]},
            "contacts[0].phones[0]: expected an object, got number 1",
        ),
        (
            msg("order", {"product_items": [{"quantity": 1.5}]}),
            "order.product_items[0].quantity: expected an integer, got number 1.5",
        ),
        (
            msg("order", {"product_items": [{"quantity": 2**64}]}),
            "order.product_items[0].quantity: expected an integer within 64 bits, "
            "got number 18446744073709551616",
        ),
        (
            msg("order", {"product_items": [{"quantity": "-" + "9" * 30}]}),
            "order.product_items[0].quantity: expected an integer, got string",
        ),
        (
            msg("order", {"product_items": [{"item_price": 10**400}]}),
            "order.product_items[0].item_price: expected a number, "
            "got number 1000000000000000000000000000000000000...",
        ),
        (
            msg("order", {"product_items": [{"item_price": "nan"}]}),
            'order.product_items[0].item_price: expected a number, got string "nan"',
        ),
        (
            msg("order", {"product_items": [{"item_price": True}]}),
            "order.product_items[0].item_price: expected a number, got true",
        ),
        (
            msg("edit", {"message": {"type": "text", "text": {"body": False}}}),
            "edit.message.text.body: expected a string, got false",
        ),
        (msg("image", "not an object"), 'image: expected an object, got string "not an object"'),
        (
            msg("text", {"body": "x" * 100}, timestamp="1" * 50),
            "timestamp: expected integer Unix seconds, "
            'got string "1111111111111111111111111111111111111..."',
        ),
        (
            msg("text", {"body": "x"}, timestamp=-5),
            "timestamp: expected Unix seconds between 0 and 253402300799, got number -5",
        ),
        (
            msg("text", {"body": "x"}, timestamp=10**12),
            "timestamp: expected Unix seconds between 0 and 253402300799, got number 1000000000000",
        ),
        (
            msg("text", {"body": "x"}, timestamp=None, context=[]),
            "context: expected an object, got an array",
        ),
        (
            msg("text", {"body": "x"}, id=["wamid"]),
            "id: expected a string or integer id, got an array",
        ),
        (msg("text", {"body": "x"}, errors="bad"), 'errors: expected an array, got string "bad"'),
        (
            msg("text", {"body": "x"}, identity={"created_timestamp": "later"}),
            'identity.created_timestamp: expected integer Unix seconds, got string "later"',
        ),
        (
            msg("interactive", {"type": "list_reply", "list_reply": {"id": None, "title": {}}}),
            "interactive.list_reply.title: expected a string, got an object",
        ),
    ],
)
def test_malformed_message_reasons(item: dict[str, Any], why: str) -> None:
    assert reason(messages(item)).startswith(why)


def test_numbers_in_describe_are_shortened() -> None:
    item = msg("location", {"latitude": "north" * 12})
    assert reason(messages(item)) == (
        'location.latitude: expected a number, got string "' + ("north" * 8)[:37] + '..."'
    )


def test_numeric_string_coordinates_and_ids_are_accepted() -> None:
    item = msg("location", {"latitude": "38.5", "longitude": 7}, id=12345)
    event = only(messages(item))
    assert (event.message.location.latitude, event.message.location.longitude) == (38.5, 7.0)
    assert event.message.id == "12345"
    assert event.dedupe_key == "message:200000000000001:12345"


def test_flow_reply_with_object_response_json_is_serialised() -> None:
    item = msg("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": {"a": "é"}}})
    assert only(messages(item)).message.interactive.flow_reply.response_json == '{"a":"é"}'


def _flow_reply(response_json: Any) -> message_pb2.FlowReply:
    item = msg("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": response_json}})
    event = only(messages(item))
    assert event.type == E.EVENT_TYPE_MESSAGE
    return event.message.interactive.flow_reply


def _nested(depth: int) -> dict[str, Any]:
    answers: dict[str, Any] = {"leaf": [1, 2]}
    for _ in range(depth - 2):  # the innermost object and its array are two levels
        answers = {"a": answers}
    return answers


def test_flow_answers_nested_20_deep_are_parsed_and_survive_the_wire() -> None:
    answers = {**_nested(20), "flow_token": "deep"}
    reply = _flow_reply(json.dumps(answers))
    assert reply.flow_token == "deep"
    assert MessageToDict(reply.response) == answers
    # Protobuf parsers refuse messages nested over 100 deep; this one must parse back.
    reply_item = {"type": "nfm_reply", "nfm_reply": {"response_json": answers}}
    event = only(messages(msg("interactive", reply_item)))
    assert event_pb2.Event.FromString(event.SerializeToString()) == event
    # One level more and only response_json keeps the answers.
    deeper = _flow_reply(json.dumps(_nested(21)))
    assert not deeper.HasField("response")
    assert deeper.response_json


@pytest.mark.parametrize(
    "response_json",
    [
        '{"n": 1e400}',  # parses as infinity: no JSON mapping for it
        '{"n": ' + "9" * 400 + "}",  # no double holds it
        '{"s": "\\ud800"}',  # a lone surrogate cannot be a protobuf string
        '{"a": [NaN]}',
        '{"flow_token": "t"',
        "",
    ],
)
def test_flow_answers_that_are_not_a_usable_object_leave_response_unset(response_json: str) -> None:
    reply = _flow_reply(response_json)
    assert not reply.HasField("response")
    assert (reply.response_json, reply.flow_token) == (response_json, "")


def test_flow_token_other_than_text_or_integer_is_left_empty() -> None:
    reply = _flow_reply('{"flow_token": {"nested": true}, "x": false}')
    assert reply.flow_token == ""
    assert MessageToDict(reply.response) == {"flow_token": {"nested": True}, "x": False}


def test_interactive_newer_kind_keeps_type_only() -> None:
    item = msg("interactive", {"type": "call_permission_reply", "call_permission_reply": {"x": 1}})
    interactive = only(messages(item)).message.interactive
    assert interactive.type == "call_permission_reply"
    assert interactive.WhichOneof("reply") is None


def test_interactive_reply_objects_may_be_absent() -> None:
    for kind, field in [
        ("button_reply", "button_reply"),
        ("list_reply", "list_reply"),
        ("nfm_reply", "flow_reply"),
    ]:
        interactive = only(messages(msg("interactive", {"type": kind}))).message.interactive
        assert interactive.WhichOneof("reply") == field


def test_edit_with_untyped_unknown_content_and_without_message() -> None:
    event = only(messages(msg("edit", {"original_message_id": "wamid.O", "message": {"x": 1}})))
    nested = event.message.edit.message
    assert event.message.edit.HasField("message")
    assert (nested.type, nested.type_name) == (message_pb2.MESSAGE_TYPE_UNSPECIFIED, "")
    event = only(messages(msg("edit", {"original_message_id": "wamid.O"})))
    assert not event.message.edit.HasField("message")


def test_unsupported_without_object_and_contact_card_without_name_or_org() -> None:
    event = only(messages(msg("unsupported")))
    assert event.message.type == message_pb2.MESSAGE_TYPE_UNSUPPORTED
    assert not event.message.HasField("unsupported")
    event = only(messages(msg("contacts") | {"contacts": [{"birthday": "2000-01-01"}]}))
    card = event.message.contacts.cards[0]
    assert card.birthday == "2000-01-01"
    assert not card.HasField("name")
    assert not card.HasField("org")


def test_referral_without_welcome_and_identity_without_time() -> None:
    item = msg("text", {"body": "x"}, referral={"source_id": 5}, identity={"hash": "h"})
    event = only(messages(item))
    assert event.message.referral.source_id == "5"
    assert event.message.referral.welcome_message_text == ""
    assert event.message.identity.hash == "h"
    assert not event.message.identity.HasField("created_time")


def test_null_optional_objects_and_parent_user_id() -> None:
    item = msg(
        "text",
        {"body": "x"},
        context=None,
        referral=None,
        identity=None,
        from_user_id="US.1",
        from_parent_user_id="US.P.1",
    )
    message = only(messages(item)).message
    assert not message.HasField("context")
    assert not message.HasField("referral")
    assert not message.HasField("identity")
    assert (message.from_user_id, message.from_parent_user_id) == ("US.1", "US.P.1")
