"""One ``messages[]`` (or ``message_echoes[]``) item → a ``wahook.v1.Message``.

Each Meta type has a small function filling its content; a type this version does
not know keeps its name and the raw JSON of ``message[type]``. Optional fields Meta
omits are left empty; a field of the wrong JSON type raises ``Malformed`` with its
path relative to the item (e.g. ``location.latitude: expected a number, got ...``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from wahook.core.common import ContactIndex, get_errors
from wahook.core.jsonutil import (
    JsonObject,
    Malformed,
    describe,
    dumps,
    get_bool,
    get_float,
    get_id,
    get_int,
    get_list,
    get_obj,
    get_str,
    get_timestamp,
    key_path,
    parse_json_text,
    require_id,
)
from wahook.v1 import message_pb2

M = message_pb2


def _content(m: JsonObject, type_name: str) -> JsonObject:
    """The object named by the type (``m["text"]`` for a text); absent → {}."""
    obj = get_obj(m, type_name)
    return {} if obj is None else obj


def _text(msg: M.Message, m: JsonObject) -> None:
    body = get_str(_content(m, "text"), "body", "text")
    if body:
        msg.text.body = body
    else:
        msg.text.SetInParent()


def _fill_media(target: M.Media, obj: JsonObject, where: str) -> None:
    target.id = get_id(obj, "id", where)
    target.mime_type = get_str(obj, "mime_type", where)
    target.sha256 = get_str(obj, "sha256", where)
    target.caption = get_str(obj, "caption", where)
    target.filename = get_str(obj, "filename", where)
    target.url = get_str(obj, "url", where)
    target.voice = get_bool(obj, "voice", where) or False
    target.animated = get_bool(obj, "animated", where) or False


def _media(kind: str) -> Callable[[M.Message, JsonObject], None]:
    def fill(msg: M.Message, m: JsonObject) -> None:
        target: M.Media = getattr(msg, kind)
        target.SetInParent()
        _fill_media(target, _content(m, kind), kind)

    return fill


def _location(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "location")
    loc = msg.location
    loc.SetInParent()
    loc.latitude = get_float(obj, "latitude", "location")
    loc.longitude = get_float(obj, "longitude", "location")
    loc.name = get_str(obj, "name", "location")
    loc.address = get_str(obj, "address", "location")
    loc.url = get_str(obj, "url", "location")


def _objects(obj: JsonObject, key: str, where: str) -> list[tuple[str, JsonObject]]:
    """The objects of an array with each one's path; a non-object element is malformed."""
    out = []
    for i, item in enumerate(get_list(obj, key, where)):
        path = f"{key_path(where, key)}[{i}]"
        if item.__class__ is not dict:
            raise Malformed(f"{path}: expected an object, got {describe(item)}")
        out.append((path, item))
    return out


def _contact_card(card: M.ContactCard, obj: JsonObject, where: str) -> None:
    name = get_obj(obj, "name", where)
    if name is not None:
        w = where + ".name"
        card.name.formatted_name = get_str(name, "formatted_name", w)
        card.name.first_name = get_str(name, "first_name", w)
        card.name.last_name = get_str(name, "last_name", w)
        card.name.middle_name = get_str(name, "middle_name", w)
        card.name.suffix = get_str(name, "suffix", w)
        card.name.prefix = get_str(name, "prefix", w)
    for w, p in _objects(obj, "phones", where):
        card.phones.add(
            phone=get_str(p, "phone", w), wa_id=get_str(p, "wa_id", w), type=get_str(p, "type", w)
        )
    for w, e in _objects(obj, "emails", where):
        card.emails.add(email=get_str(e, "email", w), type=get_str(e, "type", w))
    for w, u in _objects(obj, "urls", where):
        card.urls.add(url=get_str(u, "url", w), type=get_str(u, "type", w))
    for w, a in _objects(obj, "addresses", where):
        card.addresses.add(
            street=get_str(a, "street", w),
            city=get_str(a, "city", w),
            state=get_str(a, "state", w),
            zip=get_str(a, "zip", w),
            country=get_str(a, "country", w),
            country_code=get_str(a, "country_code", w),
            type=get_str(a, "type", w),
        )
    org = get_obj(obj, "org", where)
    if org is not None:
        w = where + ".org"
        card.org.company = get_str(org, "company", w)
        card.org.department = get_str(org, "department", w)
        card.org.title = get_str(org, "title", w)
    card.birthday = get_str(obj, "birthday", where)


def _contacts(msg: M.Message, m: JsonObject) -> None:
    cards = msg.contacts
    cards.SetInParent()
    for where, obj in _objects(m, "contacts", ""):
        _contact_card(cards.cards.add(), obj, where)


def _interactive(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "interactive")
    reply = msg.interactive
    reply.SetInParent()
    reply.type = kind = get_str(obj, "type", "interactive")
    if kind == "button_reply":
        button = get_obj(obj, "button_reply", "interactive") or {}
        w = "interactive.button_reply"
        reply.button_reply.id = get_id(button, "id", w)
        reply.button_reply.title = get_str(button, "title", w)
        reply.button_reply.SetInParent()
    elif kind == "list_reply":
        row = get_obj(obj, "list_reply", "interactive") or {}
        w = "interactive.list_reply"
        reply.list_reply.id = get_id(row, "id", w)
        reply.list_reply.title = get_str(row, "title", w)
        reply.list_reply.description = get_str(row, "description", w)
        reply.list_reply.SetInParent()
    elif kind == "nfm_reply":
        _flow_reply(reply.flow_reply, get_obj(obj, "nfm_reply", "interactive") or {})


# A Struct nests two protobuf messages per JSON level, and protobuf parsers refuse
# messages nested over 100 deep: deeper answers stay in response_json only.
MAX_FLOW_RESPONSE_DEPTH = 20


def _struct_safe(value: Any, depth: int) -> bool:
    """Whether a decoded JSON value fits a google.protobuf.Struct losslessly enough:
    nested at most MAX_FLOW_RESPONSE_DEPTH deep, every number a finite double."""
    if value.__class__ is dict or value.__class__ is list:
        if depth >= MAX_FLOW_RESPONSE_DEPTH:
            return False
        children = value.values() if value.__class__ is dict else value
        return all(_struct_safe(child, depth + 1) for child in children)
    if value.__class__ is float:
        return math.isfinite(value)
    if value.__class__ is int:
        return value.bit_length() < 1024  # float() of a larger one overflows
    return True


def _flow_reply(reply: M.FlowReply, flow: JsonObject) -> None:
    w = "interactive.nfm_reply"
    reply.SetInParent()
    reply.name = get_str(flow, "name", w)
    reply.body = get_str(flow, "body", w)
    # Meta sends the Flow's answers as a JSON *string*; accept an object too
    # and keep it as JSON text so clients always parse the same way.
    answers: Any = flow.get("response_json")
    if answers.__class__ is dict:
        reply.response_json = dumps(answers)
    else:
        reply.response_json = text = get_str(flow, "response_json", w)
        # The answers are the Flow's own data, not Meta's: text that is not a JSON
        # object leaves `response` unset rather than the message malformed.
        answers = parse_json_text(text) if text else None
    if answers.__class__ is not dict or not _struct_safe(answers, 0):
        return
    reply.response.update(answers)
    token = answers.get("flow_token")
    if token.__class__ is str:
        reply.flow_token = token
    elif token.__class__ is int:
        reply.flow_token = str(token)


def _button(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "button")
    msg.button.text = get_str(obj, "text", "button")
    msg.button.payload = get_str(obj, "payload", "button")
    msg.button.SetInParent()


def _reaction(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "reaction")
    reaction = msg.reaction
    reaction.SetInParent()
    reaction.message_id = get_str(obj, "message_id", "reaction")
    reaction.emoji = get_str(obj, "emoji", "reaction")
    # A removed reaction arrives with "emoji": "" or with no emoji key at all.
    reaction.removed = not reaction.emoji


def _order(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "order")
    order = msg.order
    order.SetInParent()
    order.catalog_id = get_id(obj, "catalog_id", "order")
    order.text = get_str(obj, "text", "order")
    for w, p in _objects(obj, "product_items", "order"):
        order.product_items.add(
            product_retailer_id=get_id(p, "product_retailer_id", w),
            quantity=get_int(p, "quantity", w),
            item_price=get_float(p, "item_price", w),
            currency=get_str(p, "currency", w),
        )


def _system(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "system")
    notice = msg.system
    notice.SetInParent()
    notice.body = get_str(obj, "body", "system")
    notice.type = get_str(obj, "type", "system")
    # Older payloads name the new number `new_wa_id`, newer ones `wa_id`.
    notice.new_wa_id = get_str(obj, "wa_id", "system") or get_str(obj, "new_wa_id", "system")
    notice.new_user_id = get_str(obj, "user_id", "system")
    notice.identity = get_str(obj, "identity", "system")
    notice.customer = get_str(obj, "customer", "system")


def _edit(msg: M.Message, m: JsonObject) -> None:
    obj = _content(m, "edit")
    edit = msg.edit
    edit.SetInParent()
    edit.original_message_id = get_str(obj, "original_message_id", "edit")
    nested = get_obj(obj, "message", "edit")
    if nested is not None:
        edit.message.SetInParent()
        try:
            parse_message(edit.message, nested, None, nested=True)
        except Malformed as exc:
            raise Malformed(f"edit.message.{exc.reason}") from None


def _revoke(msg: M.Message, m: JsonObject) -> None:
    msg.revoke.original_message_id = get_str(_content(m, "revoke"), "original_message_id", "revoke")
    msg.revoke.SetInParent()


def _unsupported(msg: M.Message, m: JsonObject) -> None:
    obj = get_obj(m, "unsupported")
    if obj is not None:
        msg.unsupported.type = get_str(obj, "type", "unsupported")
        msg.unsupported.SetInParent()


def _no_content(msg: M.Message, m: JsonObject) -> None:
    return None


_Fill = Callable[[M.Message, JsonObject], None]
_TYPES: dict[str, tuple[M.MessageType.ValueType, _Fill]] = {
    "text": (M.MESSAGE_TYPE_TEXT, _text),
    "image": (M.MESSAGE_TYPE_IMAGE, _media("image")),
    "audio": (M.MESSAGE_TYPE_AUDIO, _media("audio")),
    "video": (M.MESSAGE_TYPE_VIDEO, _media("video")),
    "document": (M.MESSAGE_TYPE_DOCUMENT, _media("document")),
    "sticker": (M.MESSAGE_TYPE_STICKER, _media("sticker")),
    "location": (M.MESSAGE_TYPE_LOCATION, _location),
    "contacts": (M.MESSAGE_TYPE_CONTACTS, _contacts),
    "interactive": (M.MESSAGE_TYPE_INTERACTIVE, _interactive),
    "button": (M.MESSAGE_TYPE_BUTTON, _button),
    "reaction": (M.MESSAGE_TYPE_REACTION, _reaction),
    "order": (M.MESSAGE_TYPE_ORDER, _order),
    "system": (M.MESSAGE_TYPE_SYSTEM, _system),
    "edit": (M.MESSAGE_TYPE_EDIT, _edit),
    "revoke": (M.MESSAGE_TYPE_REVOKE, _revoke),
    "request_welcome": (M.MESSAGE_TYPE_REQUEST_WELCOME, _no_content),
    "unsupported": (M.MESSAGE_TYPE_UNSUPPORTED, _unsupported),
    "unknown": (M.MESSAGE_TYPE_UNKNOWN, _no_content),
}


def _context(msg: M.Message, obj: JsonObject) -> None:
    ctx = msg.context
    ctx.SetInParent()
    setattr(ctx, "from", get_str(obj, "from", "context"))
    ctx.id = get_str(obj, "id", "context")
    ctx.from_user_id = get_str(obj, "from_user_id", "context")
    ctx.forwarded = get_bool(obj, "forwarded", "context") or False
    ctx.frequently_forwarded = get_bool(obj, "frequently_forwarded", "context") or False
    product = get_obj(obj, "referred_product", "context")
    if product is not None:
        w = "context.referred_product"
        ctx.referred_product.catalog_id = get_id(product, "catalog_id", w)
        ctx.referred_product.product_retailer_id = get_id(product, "product_retailer_id", w)
        ctx.referred_product.SetInParent()


def _referral(msg: M.Message, obj: JsonObject) -> None:
    ref = msg.referral
    ref.SetInParent()
    ref.source_url = get_str(obj, "source_url", "referral")
    ref.source_id = get_id(obj, "source_id", "referral")
    ref.source_type = get_str(obj, "source_type", "referral")
    ref.headline = get_str(obj, "headline", "referral")
    ref.body = get_str(obj, "body", "referral")
    ref.media_type = get_str(obj, "media_type", "referral")
    ref.image_url = get_str(obj, "image_url", "referral")
    ref.video_url = get_str(obj, "video_url", "referral")
    ref.thumbnail_url = get_str(obj, "thumbnail_url", "referral")
    ref.ctwa_clid = get_str(obj, "ctwa_clid", "referral")
    welcome = get_obj(obj, "welcome_message", "referral")
    if welcome is not None:
        ref.welcome_message_text = get_str(welcome, "text", "referral.welcome_message")


def _identity(msg: M.Message, obj: JsonObject) -> None:
    ident = msg.identity
    ident.SetInParent()
    ident.acknowledged = get_bool(obj, "acknowledged", "identity") or False
    ident.hash = get_str(obj, "hash", "identity")
    created = get_timestamp(obj, "created_timestamp", "identity")
    if created is not None:
        ident.created_time.seconds = created


def parse_message(
    msg: M.Message,
    m: JsonObject,
    contacts: ContactIndex | None,
    *,
    echo: bool = False,
    nested: bool = False,
) -> str:
    """Fill ``msg`` (in place, to spare a copy) from one item and return its wamid.

    ``nested`` (an edit's new content) may lack an id. On ``Malformed`` the caller
    discards ``msg``.

    The contact is the value's contacts[] entry of the user: the sender for an
    inbound message, the recipient (``to``) for an echo.
    """
    msg.id = wamid = get_id(m, "id") if nested else require_id(m, "id")
    sender = get_str(m, "from")
    setattr(msg, "from", sender)
    # Usually absent keys are tested for first: a membership test is cheaper than a
    # getter call and an empty assignment, and this runs for every message.
    from_user_id = ""
    if "from_user_id" in m:
        msg.from_user_id = from_user_id = get_str(m, "from_user_id")
    if "from_parent_user_id" in m:
        msg.from_parent_user_id = get_str(m, "from_parent_user_id")
    type_name = get_str(m, "type")
    if not type_name:
        if not nested:
            raise Malformed("type: missing")
        # An edit's new content may omit its type; the content key tells it.
        type_name = next((key for key in _TYPES if m.get(key) is not None), "")
    msg.type_name = type_name
    known = _TYPES.get(type_name)
    if not type_name:
        pass  # nested content with no recognisable type: MESSAGE_TYPE_UNSPECIFIED
    elif known is None:
        msg.type = M.MESSAGE_TYPE_OTHER
        other: Any = m.get(type_name)
        msg.other.json = dumps(other)
    else:
        msg.type = known[0]
        known[1](msg, m)
    if echo:
        msg.to = to = get_str(m, "to")
        msg.to_user_id = to_user_id = get_str(m, "to_user_id")
    if "context" in m:
        extra = get_obj(m, "context")
        if extra is not None:
            _context(msg, extra)
    if "referral" in m:
        extra = get_obj(m, "referral")
        if extra is not None:
            _referral(msg, extra)
    if "identity" in m:
        extra = get_obj(m, "identity")
        if extra is not None:
            _identity(msg, extra)
    if "errors" in m:
        msg.errors.extend(get_errors(m, "errors"))
    if contacts is not None:
        if echo:
            contacts.fill(msg, to, to_user_id)
        else:
            contacts.fill(msg, sender, from_user_id)
    return wamid
