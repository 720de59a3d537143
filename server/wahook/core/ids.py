"""Deterministic event ids: the dedupe key of each event, and the id derived from it.

Meta retries a webhook until it gets a 200, and may batch a retried update with
different neighbours, so a key must depend only on the update itself: never on
its position in the arrays, never on when wahook received it.

- message:  ``message:{phone_number_id}:{wamid}`` — a wamid is unique per business
  number, and Meta redelivers the same wamid for the same message.
- echo:     ``echo:{phone_number_id}:{wamid}`` — same reasoning for messages the
  business sent from the WhatsApp Business app.
- status:   ``status:{phone_number_id}:{wamid}:{status}:{timestamp}:{recipient_id}:
  {recipient_user_id}:{participant_id}`` — one message gets several statuses
  ("delivered" then "read"), and in groups one per participant, so the key
  includes what distinguishes them; a retry of the same status repeats all parts.
  The participant is ``recipient_participant_id``, or ``recipient_participant_user_id``
  when Meta withheld the participant's phone number.
- any other field: ``{field}:{waba_id}:{phone_number_id}:{entry_time}:{digest}``
  where the digest hashes the canonical JSON (sorted keys) of the item or value:
  these updates have no id of their own, so their content is their identity.
  Value-level errors use the field ``value_errors:{field}`` and hash the errors.
- malformed: ``malformed:{field}:{waba_id}:{phone_number_id}:{digest}`` hashing the
  item's canonical JSON — its path is deliberately left out (batching moves it).

The event id is ``"evt_"`` plus the first 32 hex characters of SHA-256(dedupe_key).
"""

from __future__ import annotations

import hashlib


def event_id(dedupe_key: str) -> str:
    """The stable event id for a dedupe key."""
    return "evt_" + hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:32]


def message_key(phone_number_id: str, wamid: str) -> str:
    return f"message:{phone_number_id}:{wamid}"


def echo_key(phone_number_id: str, wamid: str) -> str:
    return f"echo:{phone_number_id}:{wamid}"


def status_key(
    phone_number_id: str,
    wamid: str,
    *,
    status: str,
    timestamp: int | None,
    recipient_id: str,
    recipient_user_id: str,
    participant_id: str,
) -> str:
    ts = "" if timestamp is None else str(timestamp)
    return (
        f"status:{phone_number_id}:{wamid}:{status}:{ts}:"
        f"{recipient_id}:{recipient_user_id}:{participant_id}"
    )


def content_key(
    field: str, waba_id: str, phone_number_id: str, entry_time: int | None, content_digest: str
) -> str:
    ts = "" if entry_time is None else str(entry_time)
    return f"{field}:{waba_id}:{phone_number_id}:{ts}:{content_digest}"


def malformed_key(field: str, waba_id: str, phone_number_id: str, content_digest: str) -> str:
    return f"malformed:{field}:{waba_id}:{phone_number_id}:{content_digest}"
