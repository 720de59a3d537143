"""Typed payloads for the webhook fields other than messages (templates, number, account, flows...).

Each parser takes the change's ``value`` (or, for per-item fields, one item) and
returns the payload message; the normaliser puts it in the envelope. Meta sends
template ids as large JSON numbers, so ids are read as "string or integer".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from google.protobuf.message import Message

from wahook.core.common import ContactIndex, get_errors
from wahook.core.jsonutil import (
    MAX_TIMESTAMP,
    JsonObject,
    Malformed,
    describe,
    get_id,
    get_int,
    get_list,
    get_obj,
    get_str,
    get_timestamp,
    is_decimal,
)
from wahook.v1 import account_pb2, event_pb2

A = account_pb2


class _Template(TypedDict):
    """The template a template field is about: three fields of each payload."""

    template_id: str
    template_name: str
    template_language: str


def _template(v: JsonObject) -> _Template:
    return _Template(
        template_id=get_id(v, "message_template_id"),
        template_name=get_str(v, "message_template_name"),
        template_language=get_str(v, "message_template_language"),
    )


def template_status(v: JsonObject) -> A.TemplateStatusUpdate:
    update = A.TemplateStatusUpdate(
        event=get_str(v, "event"),
        **_template(v),
        reason=get_str(v, "reason"),
        template_category=get_str(v, "message_template_category"),
    )
    other = get_obj(v, "other_info")
    if other is not None:
        update.other_info_title = get_str(other, "title", "other_info")
        update.other_info_description = get_str(other, "description", "other_info")
    disable = get_obj(v, "disable_info")
    if disable is not None:
        # Meta sends disable_date as text in some versions and as seconds in others.
        update.disable_date = date = get_id(disable, "disable_date", "disable_info")
        if is_decimal(date) and int(date) <= MAX_TIMESTAMP:
            update.disable_time.seconds = int(date)
    rejection = get_obj(v, "rejection_info")
    if rejection is not None:
        update.rejection_info_reason = get_str(rejection, "reason", "rejection_info")
        update.rejection_info_recommendation = get_str(
            rejection, "recommendation", "rejection_info"
        )
    return update


def template_components(v: JsonObject) -> A.TemplateComponentsUpdate:
    update = A.TemplateComponentsUpdate(
        **_template(v),
        body=get_str(v, "message_template_element"),
        header=get_str(v, "message_template_title"),
        footer=get_str(v, "message_template_footer"),
    )
    for i, button in enumerate(get_list(v, "message_template_buttons")):
        where = f"message_template_buttons[{i}]"
        if button.__class__ is not dict:
            raise Malformed(f"{where}: expected an object, got {describe(button)}")
        update.buttons.add(
            type=get_str(button, "message_template_button_type", where),
            text=get_str(button, "message_template_button_text", where),
            url=get_str(button, "message_template_button_url", where),
            phone_number=get_id(button, "message_template_button_phone_number", where),
        )
    return update


def template_quality(v: JsonObject) -> A.TemplateQualityUpdate:
    return A.TemplateQualityUpdate(
        **_template(v),
        previous_quality_score=get_str(v, "previous_quality_score"),
        new_quality_score=get_str(v, "new_quality_score"),
    )


def template_category(v: JsonObject) -> A.TemplateCategoryUpdate:
    update = A.TemplateCategoryUpdate(
        **_template(v),
        previous_category=get_str(v, "previous_category"),
        new_category=get_str(v, "new_category"),
        correct_category=get_str(v, "correct_category"),
    )
    when = get_timestamp(v, "category_update_timestamp")
    if when is not None:
        update.category_update_time.seconds = when
    return update


def phone_quality(v: JsonObject) -> A.PhoneNumberQualityUpdate:
    return A.PhoneNumberQualityUpdate(
        display_phone_number=get_id(v, "display_phone_number"),
        event=get_str(v, "event"),
        current_limit=get_str(v, "current_limit"),
        # Renamed by Meta in 2025; accept the new name and the old one.
        max_daily_conversation_per_phone=(
            get_id(v, "max_daily_conversations_per_business")
            or get_id(v, "max_daily_conversation_per_phone")
        ),
    )


def phone_name(v: JsonObject) -> A.PhoneNumberNameUpdate:
    return A.PhoneNumberNameUpdate(
        display_phone_number=get_id(v, "display_phone_number"),
        decision=get_str(v, "decision"),
        requested_verified_name=get_str(v, "requested_verified_name"),
        rejection_reason=get_str(v, "rejection_reason"),
    )


def account_update(v: JsonObject) -> A.AccountUpdate:
    update = A.AccountUpdate(event=get_str(v, "event"), phone_number=get_id(v, "phone_number"))
    ban = get_obj(v, "ban_info")
    if ban is not None:
        state = ban.get("waba_ban_state")
        # Meta's reference shows the state as an array of strings; payloads seen in
        # the wild carry one string. Accept both, joining an array with commas.
        if state.__class__ is list and all(part.__class__ is str for part in state):
            update.ban_state = ",".join(state)
        else:
            update.ban_state = get_str(ban, "waba_ban_state", "ban_info")
    violation = get_obj(v, "violation_info")
    if violation is not None:
        update.violation_type = get_str(violation, "violation_type", "violation_info")
    return update


def flow_update(v: JsonObject) -> A.FlowUpdate:
    return A.FlowUpdate(
        event=get_str(v, "event"),
        flow_id=get_id(v, "flow_id"),
        message=get_str(v, "message"),
        old_status=get_str(v, "old_status"),
        new_status=get_str(v, "new_status"),
    )


def user_preference(item: JsonObject, contacts: ContactIndex | None) -> A.UserPreference:
    pref = A.UserPreference(
        wa_id=get_str(item, "wa_id"),
        user_id=get_str(item, "user_id"),
        category=get_str(item, "category"),
        value=get_str(item, "value"),
        detail=get_str(item, "detail"),
    )
    if contacts is not None:
        contacts.fill(pref, pref.wa_id, pref.user_id)
    return pref


def history_sync(item: JsonObject) -> A.HistorySync:
    sync = A.HistorySync()
    meta = get_obj(item, "metadata")
    if meta is not None:
        sync.phase = get_int(meta, "phase", "metadata")
        sync.chunk_order = get_int(meta, "chunk_order", "metadata")
        sync.progress = get_int(meta, "progress", "metadata")
    threads: list[Any] = get_list(item, "threads")
    sync.thread_count = len(threads)
    count = 0
    for i, thread in enumerate(threads):
        where = f"threads[{i}]"
        if thread.__class__ is not dict:
            raise Malformed(f"{where}: expected an object, got {describe(thread)}")
        count += len(get_list(thread, "messages", where))
    sync.message_count = count
    if "errors" in item:
        sync.errors.extend(get_errors(item, "errors"))
    return sync


E = event_pb2

# Whole-value fields: the parser, the Event payload attribute it fills, the event type.
WHOLE_VALUE_FIELDS: dict[
    str, tuple[Callable[[JsonObject], Message], str, event_pb2.EventType.ValueType]
] = {
    "message_template_status_update": (
        template_status,
        "template_status_update",
        E.EVENT_TYPE_TEMPLATE_STATUS_UPDATE,
    ),
    "message_template_quality_update": (
        template_quality,
        "template_quality_update",
        E.EVENT_TYPE_TEMPLATE_QUALITY_UPDATE,
    ),
    "template_category_update": (
        template_category,
        "template_category_update",
        E.EVENT_TYPE_TEMPLATE_CATEGORY_UPDATE,
    ),
    "message_template_components_update": (
        template_components,
        "template_components_update",
        E.EVENT_TYPE_TEMPLATE_COMPONENTS_UPDATE,
    ),
    "phone_number_quality_update": (
        phone_quality,
        "phone_number_quality_update",
        E.EVENT_TYPE_PHONE_NUMBER_QUALITY_UPDATE,
    ),
    "phone_number_name_update": (
        phone_name,
        "phone_number_name_update",
        E.EVENT_TYPE_PHONE_NUMBER_NAME_UPDATE,
    ),
    "account_update": (account_update, "account_update", E.EVENT_TYPE_ACCOUNT_UPDATE),
    "flows": (flow_update, "flow_update", E.EVENT_TYPE_FLOW_UPDATE),
}
