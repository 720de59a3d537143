"""One ``statuses[]`` item → a ``wahook.v1.Status`` (delivery state of an outbound message)."""

from __future__ import annotations

from wahook.core.common import ContactIndex, get_errors
from wahook.core.jsonutil import (
    JsonObject,
    Malformed,
    get_bool,
    get_id,
    get_obj,
    get_str,
    get_timestamp,
    require_id,
)
from wahook.v1 import status_pb2

S = status_pb2

_STATES = {
    "sent": S.DELIVERY_STATE_SENT,
    "delivered": S.DELIVERY_STATE_DELIVERED,
    "read": S.DELIVERY_STATE_READ,
    "played": S.DELIVERY_STATE_PLAYED,
    "failed": S.DELIVERY_STATE_FAILED,
}


def _participant(status: S.Status, s: JsonObject) -> tuple[str, str]:
    """A group status's participant: their phone number and BSUID (either may be "")."""
    status.recipient_participant_id = participant_id = get_id(s, "recipient_participant_id")
    status.recipient_participant_user_id = user_id = get_str(s, "recipient_participant_user_id")
    status.recipient_participant_parent_user_id = get_str(s, "recipient_participant_parent_user_id")
    return participant_id, user_id


def parse_status(
    status: S.Status, s: JsonObject, contacts: ContactIndex | None
) -> tuple[str, str, str, str, str]:
    """Fill ``status`` in place from one item; ``id`` and ``status`` are required.

    Returns what the dedupe key needs (wamid, status, recipient id, recipient user
    id, participant id or else participant user id), sparing the caller reading
    them back from the message.
    """
    status.id = wamid = require_id(s, "id")
    name = get_str(s, "status")
    if not name:
        raise Malformed("status: missing")
    status.status_name = name
    # Meta may add states (e.g. "deleted" in older versions); keep the name.
    status.state = _STATES.get(name, S.DELIVERY_STATE_OTHER)
    status.recipient_id = recipient_id = get_id(s, "recipient_id")
    # Statuses are half of all traffic and most keys below are usually absent:
    # testing membership first skips a call and an empty assignment for each.
    recipient_user_id = participant_id = participant_user_id = ""
    if "recipient_user_id" in s:
        status.recipient_user_id = recipient_user_id = get_str(s, "recipient_user_id")
    if "recipient_parent_user_id" in s:
        status.recipient_parent_user_id = get_str(s, "recipient_parent_user_id")
    if "recipient_type" in s:
        status.recipient_type = get_str(s, "recipient_type")
    if "recipient_participant_id" in s or "recipient_participant_user_id" in s:
        participant_id, participant_user_id = _participant(status, s)
    if "biz_opaque_callback_data" in s:
        status.biz_opaque_callback_data = get_str(s, "biz_opaque_callback_data")
    conversation = get_obj(s, "conversation") if "conversation" in s else None
    if conversation is not None:
        conv = status.conversation
        conv.SetInParent()
        conv.id = get_id(conversation, "id", "conversation")
        expires = get_timestamp(conversation, "expiration_timestamp", "conversation")
        if expires is not None:
            conv.expiration_time.seconds = expires
        origin = get_obj(conversation, "origin", "conversation")
        if origin is not None:
            conv.origin_type = get_str(origin, "type", "conversation.origin")
    pricing = get_obj(s, "pricing") if "pricing" in s else None
    if pricing is not None:
        price = status.pricing
        price.SetInParent()
        billable = get_bool(pricing, "billable", "pricing")
        if billable is not None:
            price.billable = billable
        price.pricing_model = get_str(pricing, "pricing_model", "pricing")
        price.type = get_str(pricing, "type", "pricing")
        price.category = get_str(pricing, "category", "pricing")
    if "errors" in s:
        status.errors.extend(get_errors(s, "errors"))
    if participant_id or participant_user_id:
        # A group status: recipient_id is the group, and contacts[] describes the
        # participant who received or read the message.
        if contacts is not None:
            contacts.fill(status, participant_id, participant_user_id)
        # A participant reached by BSUID has no participant_id; the BSUID then
        # tells the participants' statuses apart.
        return wamid, name, recipient_id, recipient_user_id, participant_id or participant_user_id
    if contacts is not None:
        contacts.fill(status, recipient_id, recipient_user_id)
    return wamid, name, recipient_id, recipient_user_id, ""
