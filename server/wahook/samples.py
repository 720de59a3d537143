"""Sample WhatsApp Cloud API webhook payloads, one per kind, with fresh ids (for `wahook send`).

Shapes follow Meta's webhook reference; every id and phone number is made up (phones
are 1555010xxxx). Each call draws new wamids and uses the current time, so sending
the same kind twice stores two events rather than deduplicating.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE = "15550100001"
USER_WA_ID = "15550101234"
USER_NAME = "Sample User"

Json = dict[str, Any]


def _wamid() -> str:
    # Real wamids are base64 of an opaque blob; any unique string does here.
    return "wamid.SAMPLE" + secrets.token_hex(16).upper()


def _media_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))


def _message(kind_type: str, content: Json, now: int, **extra: Any) -> Json:
    msg: Json = {"from": USER_WA_ID, "id": _wamid(), "timestamp": str(now), "type": kind_type}
    msg.update(content)
    msg.update(extra)
    return msg


def _context() -> Json:
    return {"from": DISPLAY_PHONE, "id": _wamid()}


def _media(mime: str, **extra: Any) -> Json:
    return {"mime_type": mime, "sha256": secrets.token_hex(32), "id": _media_id(), **extra}


def _text(now: int) -> Json:
    return _message("text", {"text": {"body": "Hello from wahook send"}}, now)


def _image(now: int) -> Json:
    return _message("image", {"image": _media("image/jpeg", caption="A sample photo")}, now)


def _audio(now: int) -> Json:
    return _message("audio", {"audio": _media("audio/ogg; codecs=opus", voice=True)}, now)


def _video(now: int) -> Json:
    return _message("video", {"video": _media("video/mp4", caption="A sample clip")}, now)


def _document(now: int) -> Json:
    doc = _media("application/pdf", filename="invoice-0042.pdf", caption="Invoice")
    return _message("document", {"document": doc}, now)


def _sticker(now: int) -> Json:
    return _message("sticker", {"sticker": _media("image/webp", animated=False)}, now)


def _location(now: int) -> Json:
    loc = {
        "latitude": 52.520008,
        "longitude": 13.404954,
        "name": "Sample Square",
        "address": "1 Example Street, Berlin",
    }
    return _message("location", {"location": loc}, now)


def _contacts(now: int) -> Json:
    card = {
        "name": {"formatted_name": "Ada Example", "first_name": "Ada", "last_name": "Example"},
        "phones": [{"phone": "+1 555 010 5678", "wa_id": "15550105678", "type": "CELL"}],
        "emails": [{"email": "ada@example.com", "type": "WORK"}],
        "urls": [{"url": "https://example.com", "type": "WORK"}],
        "addresses": [{"street": "1 Example Street", "city": "Berlin", "country_code": "DE"}],
        "org": {"company": "Example GmbH", "title": "Engineer"},
        "birthday": "1990-12-10",
    }
    return _message("contacts", {"contacts": [card]}, now)


def _button(now: int) -> Json:
    return _message(
        "button",
        {"button": {"text": "Yes, confirm", "payload": "CONFIRM"}},
        now,
        context=_context(),
    )


def _interactive(now: int, reply: Json) -> Json:
    return _message("interactive", {"interactive": reply}, now, context=_context())


def _button_reply(now: int) -> Json:
    return _interactive(
        now, {"type": "button_reply", "button_reply": {"id": "btn-yes", "title": "Yes"}}
    )


def _list_reply(now: int) -> Json:
    row = {"id": "row-2", "title": "Tomorrow 10:00", "description": "Morning slot"}
    return _interactive(now, {"type": "list_reply", "list_reply": row})


def _flow(now: int) -> Json:
    response = json.dumps({"flow_token": "sample-token", "rating": "5"})
    reply = {"name": "flow", "body": "Sent", "response_json": response}
    return _interactive(now, {"type": "nfm_reply", "nfm_reply": reply})


def _reaction(now: int) -> Json:
    return _message("reaction", {"reaction": {"message_id": _wamid(), "emoji": "\U0001f44d"}}, now)


def _order(now: int) -> Json:
    order = {
        "catalog_id": "1234567890123456",
        "text": "Please deliver before noon",
        "product_items": [
            {"product_retailer_id": "sku-1", "quantity": 2, "item_price": 9.5, "currency": "EUR"},
            {"product_retailer_id": "sku-7", "quantity": 1, "item_price": 24, "currency": "EUR"},
        ],
    }
    return _message("order", {"order": order}, now)


MESSAGE_KINDS: dict[str, Callable[[int], Json]] = {
    "text": _text,
    "image": _image,
    "audio": _audio,
    "video": _video,
    "document": _document,
    "sticker": _sticker,
    "location": _location,
    "contacts": _contacts,
    "button": _button,
    "button_reply": _button_reply,
    "list_reply": _list_reply,
    "flow": _flow,
    "reaction": _reaction,
    "order": _order,
}

STATUS_KINDS = ("status-sent", "status-delivered", "status-read", "status-failed")
KINDS: tuple[str, ...] = (*MESSAGE_KINDS, *STATUS_KINDS, "template-status")


def _status(state: str, now: int, message_id: str | None) -> Json:
    status: Json = {
        "id": message_id or _wamid(),
        "status": state,
        "timestamp": str(now),
        "recipient_id": USER_WA_ID,
    }
    if state == "failed":
        status["errors"] = [
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "More than 24 hours since the customer last replied."},
            }
        ]
    else:
        status["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
        status["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    return status


def _envelope(field: str, value: Json) -> Json:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }


def payload(kind: str, *, now: int | None = None, message_id: str | None = None) -> Json:
    """The webhook payload of ``kind`` (one of KINDS) as a JSON object.

    ``message_id`` sets the wamid of a status (to walk one message through sent,
    delivered, read); it is fresh otherwise."""
    ts = int(time.time()) if now is None else now
    metadata = {"display_phone_number": DISPLAY_PHONE, "phone_number_id": PHONE_NUMBER_ID}
    if kind in MESSAGE_KINDS:
        value: Json = {
            "messaging_product": "whatsapp",
            "metadata": metadata,
            "contacts": [{"profile": {"name": USER_NAME}, "wa_id": USER_WA_ID}],
            "messages": [MESSAGE_KINDS[kind](ts)],
        }
        return _envelope("messages", value)
    if kind in STATUS_KINDS:
        state = kind.removeprefix("status-")
        value = {
            "messaging_product": "whatsapp",
            "metadata": metadata,
            "statuses": [_status(state, ts, message_id)],
        }
        return _envelope("messages", value)
    if kind == "template-status":
        value = {
            "event": "APPROVED",
            "message_template_id": 10**14 + secrets.randbelow(10**14),
            "message_template_name": "order_update",
            "message_template_language": "en_US",
            "reason": "NONE",
        }
        return _envelope("message_template_status_update", value)
    raise KeyError(f"unknown sample kind {kind!r}; one of: {', '.join(KINDS)}")


def body(kind: str, **kwargs: Any) -> bytes:
    """The payload as bytes the way Meta sends it: compact, non-ASCII escaped as \\uXXXX
    and "/" as "\\/" (the signature is over exactly these bytes)."""
    text = json.dumps(payload(kind, **kwargs), separators=(",", ":"), ensure_ascii=True)
    return text.replace("/", "\\/").encode("ascii")
