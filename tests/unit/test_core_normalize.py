"""Edge cases of the normaliser that the fixture files do not show one by one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from normalize_helpers import META, messages, msg, only, reason, wrap
from wahook.core import ids
from wahook.core.normalize import normalize
from wahook.errors import PayloadError
from wahook.v1 import event_pb2

E = event_pb2

# -- body level ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8: invalid byte at offset 0"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": -Infinity}', "-Infinity is not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
        (b'{"a": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"a": "\\udc00x"}', "lone UTF-16 surrogate"),
        (b"[]", "top level is an array"),
        (b'"whatsapp_business_account"', "top level is string"),
        (b"null", "top level is null"),
        (b"17", "top level is number 17"),
        (b"true", "top level is true"),
    ],
)
def test_payload_errors(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        normalize(body, 0.0)
    assert message in info.value.message
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    ("text", "lone"),
    [
        (b"\\ud83d\\ude00", False),  # a pair: one emoji
        (b"\\uD83D\\uDE00 and \\ud83d\\udc4d", False),
        (b"\\ud83d", True),
        (b"\\ude00", True),
        (b"\\ude00\\ud83d", True),  # reversed
        (b"\\ud83dx\\ude00", True),  # not adjacent
        (b"\\ud83d\\ud83d\\ude00", True),  # two highs
        (b"\\ud83d\\\\", True),  # high, then an escaped backslash
        (b"\\\\ud800", False),  # escaped backslash, then the text ud800
        (b"\\\\\\ud800", True),  # escaped backslash, then a real escape
        (b"\\\\ud83d\\ude00", True),  # text "ud83d", then a lone low escape
    ],
)
def test_lone_surrogate_detection(text: bytes, lone: bool) -> None:
    body = b'{"object":"x","s":"' + text + b'"}'
    if lone:
        with pytest.raises(PayloadError, match="lone UTF-16 surrogate"):
            normalize(body, 0.0)
    else:
        assert normalize(body, 0.0) == []


def test_escaped_backslash_before_u_d800_text_is_not_a_surrogate() -> None:
    # The JSON text "\\ud800" is a backslash followed by "ud800": valid Unicode.
    events = messages(msg("text", {"body": "\\ud800"}, timestamp="1"))
    assert only(events).message.text.body == "\\ud800"


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"object": "page", "entry": []},
        {"object": None},
        {"object": ["whatsapp_business_account"]},
    ],
)
def test_other_objects_give_no_events(doc: dict[str, Any]) -> None:
    assert normalize(json.dumps(doc).encode(), 0.0) == []


def test_missing_entry_array_is_one_malformed_event() -> None:
    events = normalize(b'{"object":"whatsapp_business_account"}', 0.0)
    assert reason(events) == "entry: expected an array, got null"
    assert only(events).malformed.path == ""


def test_empty_entry_and_changes_give_nothing() -> None:
    assert normalize(b'{"object":"whatsapp_business_account","entry":[]}', 0.0) == []
    body = b'{"object":"whatsapp_business_account","entry":[{"id":"1"},{"id":"2","changes":[]}]}'
    assert normalize(body, 0.0) == []


def test_received_time_keeps_fractions() -> None:
    event = only(normalize(wrap({"x": 1}, field="future"), 1764000100.25))
    assert (event.received_time.seconds, event.received_time.nanos) == (1764000100, 250000000)


# -- values and items ----------------------------------------------------------------


def test_value_without_metadata_and_null_items_are_tolerated() -> None:
    # Tolerated, and not dropped: a change with no item keeps its whole value.
    value = {"messages": None, "statuses": None, "contacts": None}
    event = only(normalize(wrap(value), 0.0))
    assert event.type == E.EVENT_TYPE_CHANGE
    assert (event.change.field, list(event.change.keys)) == ("messages", [])
    assert json.loads(event.raw_json) == value
    assert event.phone_number_id == ""


def test_envelope_keys_holding_more_than_the_envelope_keeps_are_kept() -> None:
    # metadata with a key beyond the two the envelope keeps, and a messaging_product
    # other than "whatsapp", go to the change's CHANGE event; the item is unaffected.
    item = msg("text", {"body": "hi"}, timestamp="1764000000")
    value = {
        "messaging_product": "whatsapp_next",
        "metadata": {**META, "region": "eu"},
        "contacts": [],
        "messages": [item],
    }
    message, change = normalize(wrap(value), 0.0)
    assert message.type == E.EVENT_TYPE_MESSAGE
    assert message.phone_number_id == META["phone_number_id"]
    assert change.type == E.EVENT_TYPE_CHANGE
    assert list(change.change.keys) == ["messaging_product", "metadata"]
    assert json.loads(change.raw_json) == {
        "messaging_product": "whatsapp_next",
        "metadata": value["metadata"],
    }
    # The usual envelope, and empty contacts with no item, give nothing more.
    value = {"messaging_product": "whatsapp", "metadata": META, "contacts": [], "messages": [item]}
    assert [e.type for e in normalize(wrap(value), 0.0)] == [E.EVENT_TYPE_MESSAGE]


def test_value_errors_malformed() -> None:
    events = normalize(wrap({"metadata": META, "errors": [{"code": "x"}]}), 0.0)
    assert reason(events) == 'errors[0].code: expected an integer, got string "x"'
    assert only(events).malformed.path == "entry[0].changes[0].value.errors"
    events = normalize(wrap({"metadata": META, "errors": {"code": 1}}), 0.0)
    assert reason(events) == "errors: expected an array, got an object"
    events = normalize(wrap({"metadata": META, "errors": ["boom"]}), 0.0)
    assert reason(events) == 'errors[0]: expected an object, got string "boom"'


def test_value_errors_present_even_when_empty() -> None:
    event = only(normalize(wrap({"metadata": META, "errors": []}), 0.0))
    assert event.type == E.EVENT_TYPE_VALUE_ERRORS
    assert event.HasField("value_errors")
    assert list(event.value_errors.errors) == []


def test_contact_entries_that_are_not_objects_are_skipped() -> None:
    contacts = ["junk", None, {"wa_id": "15550101001", "profile": {"name": "Real"}}]
    event = only(messages(msg("text", {"body": "hi"}), contacts=contacts))
    assert event.message.contact.name == "Real"


def test_contact_without_profile_and_first_duplicate_wins() -> None:
    contacts = [{"wa_id": "15550101001"}, {"wa_id": "15550101001", "profile": {"name": "Second"}}]
    event = only(messages(msg("text", {"body": "hi"}), contacts=contacts))
    assert event.message.contact.wa_id == "15550101001"
    assert event.message.contact.name == ""


def test_message_with_no_sender_ids_gets_no_contact() -> None:
    item = {"id": "wamid.X1", "type": "text", "text": {"body": "?"}}
    event = only(messages(item, contacts=[{"wa_id": "", "profile": {"name": "Nobody"}}]))
    assert not event.message.HasField("contact")


def test_user_id_fallback_when_wa_id_has_no_match() -> None:
    item = msg("text", {"body": "hi"}, from_user_id="US.9")
    contacts = [{"user_id": "US.8"}]
    assert not only(messages(item, contacts=contacts)).message.HasField("contact")
    contacts = [{"user_id": "US.9", "profile": {"name": "By BSUID"}}]
    assert only(messages(item, contacts=contacts)).message.contact.name == "By BSUID"


def test_a_matched_contact_with_wrong_types_makes_its_item_malformed() -> None:
    contacts = [{"wa_id": "15550101001", "profile": {"name": 7}}]
    events = messages(msg("text", {"body": "hi"}), contacts=contacts)
    assert reason(events) == (
        "entry[0].changes[0].value.contacts[0].profile.name: expected a string, got number 7"
    )


def test_status_partial_conversation_and_pricing() -> None:
    value = {
        "metadata": META,
        "statuses": [
            {"id": "wamid.S", "status": "sent", "conversation": {"id": "c1"}, "pricing": {}},
        ],
    }
    status = only(normalize(wrap(value), 0.0)).status
    assert status.conversation.id == "c1"
    assert not status.conversation.HasField("expiration_time")
    assert status.conversation.origin_type == ""
    assert status.HasField("pricing")
    assert not status.pricing.HasField("billable")


def test_status_key_has_empty_timestamp_when_absent() -> None:
    value = {"metadata": META, "statuses": [{"id": "wamid.S", "status": "sent"}]}
    event = only(normalize(wrap(value), 0.0))
    assert event.dedupe_key == "status:200000000000001:wamid.S:sent::::"
    assert not event.HasField("occurred_time")


def test_user_preferences_without_contacts_and_history_thread_junk() -> None:
    value = {"metadata": META, "user_preferences": [{"wa_id": "15550101001", "value": "stop"}]}
    event = only(normalize(wrap(value, field="user_preferences"), 0.0))
    assert event.user_preference.value == "stop"
    assert not event.user_preference.HasField("contact")
    value = {"metadata": META, "user_preferences": [{"wa_id": "15550101009"}], "contacts": []}
    assert not only(normalize(wrap(value, field="user_preferences"), 0.0)).user_preference.HasField(
        "contact"
    )
    value = {"metadata": META, "history": [{"threads": ["junk"]}]}
    events = normalize(wrap(value, field="history"), 0.0)
    assert reason(events) == 'threads[0]: expected an object, got string "junk"'


def test_account_ban_state_as_string_and_bad_array() -> None:
    value = {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "DISABLE"}}
    assert only(normalize(wrap(value, field="account_update"), 0.0)).account_update.ban_state == (
        "DISABLE"
    )
    value = {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": [1]}}
    assert reason(normalize(wrap(value, field="account_update"), 0.0)) == (
        "ban_info.waba_ban_state: expected a string, got an array"
    )


def test_template_fields_of_the_wrong_type_are_malformed_with_their_path() -> None:
    field = "message_template_components_update"
    value = {"message_template_id": 1, "message_template_buttons": ["URL"]}
    assert reason(normalize(wrap(value, field=field), 0.0)) == (
        'message_template_buttons[0]: expected an object, got string "URL"'
    )
    value = {"message_template_buttons": [{"message_template_button_url": 7}]}
    assert reason(normalize(wrap(value, field=field), 0.0)) == (
        "message_template_buttons[0].message_template_button_url: expected a string, got number 7"
    )
    value = {"event": "REJECTED", "rejection_info": {"reason": ["too", "long"]}}
    assert reason(normalize(wrap(value, field="message_template_status_update"), 0.0)) == (
        "rejection_info.reason: expected a string, got an array"
    )
    value = {"new_category": "UTILITY", "category_update_timestamp": "tomorrow"}
    assert reason(normalize(wrap(value, field="template_category_update"), 0.0)) == (
        'category_update_timestamp: expected integer Unix seconds, got string "tomorrow"'
    )


def test_disable_date_beyond_timestamp_range_stays_text_only() -> None:
    value = {"event": "DISABLED", "disable_info": {"disable_date": 253402300800}}
    update = only(normalize(wrap(value, field="message_template_status_update"), 0.0))
    assert update.template_status_update.disable_date == "253402300800"
    assert not update.template_status_update.HasField("disable_time")


def test_echo_contact_is_the_recipient() -> None:
    value = {
        "metadata": META,
        "contacts": [{"wa_id": "15550101002", "profile": {"name": "Recipient"}}],
        "message_echoes": [
            {
                "from": "15550100001",
                "to": "15550101002",
                "id": "wamid.E",
                "type": "text",
                "text": {},
            }
        ],
    }
    event = only(normalize(wrap(value, field="smb_message_echoes"), 0.0))
    assert event.message_echo.message.contact.name == "Recipient"


def test_malformed_key_ignores_path_but_not_content() -> None:
    first = messages("junk", msg("text", {"body": "ok"}))
    second = messages(
        msg("text", {"body": "ok"}), msg("text", {"body": "ok"}, id="wamid.X2"), "junk"
    )
    assert first[0].id == second[2].id
    assert first[0].malformed.path != second[2].malformed.path
    other = messages("other junk")
    assert other[0].id != first[0].id


def test_event_id_is_sha256_prefix() -> None:
    assert (
        ids.event_id("message:1:wamid.A")
        == "evt_" + __import__("hashlib").sha256(b"message:1:wamid.A").hexdigest()[:32]
    )


def test_null_errors_and_missing_coordinates_are_absent() -> None:
    event = only(messages(msg("location", {"name": "somewhere"}, errors=None)))
    assert (event.message.location.latitude, event.message.location.name) == (0.0, "somewhere")
    assert list(event.message.errors) == []
    # null errors give no VALUE_ERRORS event; the change, with nothing else, is kept whole.
    event = only(normalize(wrap({"metadata": META, "errors": None}), 0.0))
    assert event.type == E.EVENT_TYPE_CHANGE


def test_a_batch_of_1000_updates_gives_1000_events_in_order() -> None:
    # Meta batches up to 1000 updates in one POST; none may be dropped or reordered.
    items = [
        {"from": f"1555010{i % 10000:04d}", "id": f"wamid.B{i:04d}", "type": "text", "text": {}}
        for i in range(600)
    ]
    statuses = [{"id": f"wamid.S{i:04d}", "status": "read"} for i in range(400)]
    value = {"metadata": META, "messages": items, "statuses": statuses}
    events = normalize(wrap(value), 0.0)
    assert len(events) == 1000
    assert [e.message.id for e in events[:600]] == [f"wamid.B{i:04d}" for i in range(600)]
    assert [e.status.id for e in events[600:]] == [f"wamid.S{i:04d}" for i in range(400)]
    assert len({e.id for e in events}) == 1000
