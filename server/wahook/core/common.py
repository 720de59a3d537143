"""Parsers shared by messages, statuses and other fields: errors[] and the value's contacts[].

Contacts are matched to an item by identity (``wa_id`` or ``user_id``), never by
array position: Meta does not promise that contacts[i] belongs to messages[i], and
in a batch of several senders the order differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wahook.core.jsonutil import (
    JsonObject,
    Malformed,
    describe,
    get_int,
    get_obj,
    get_str,
    key_path,
)
from wahook.v1 import common_pb2


def parse_error(obj: Any, where: str) -> common_pb2.WhatsAppError:
    if obj.__class__ is not dict:
        raise Malformed(f"{where}: expected an object, got {describe(obj)}")
    err = common_pb2.WhatsAppError(
        code=get_int(obj, "code", where),
        title=get_str(obj, "title", where),
        message=get_str(obj, "message", where),
        href=get_str(obj, "href", where),
    )
    data = get_obj(obj, "error_data", where)
    if data is not None:
        err.details = get_str(data, "details", where + ".error_data")
    return err


def parse_errors(items: list[Any], where: str) -> list[common_pb2.WhatsAppError]:
    return [parse_error(item, f"{where}[{i}]") for i, item in enumerate(items)]


_CONTACT_KEYS = ("wa_id", "user_id", "parent_user_id")
_PROFILE_KEYS = ("name", "username")


class ContactIndex:
    """The value's ``contacts[]`` looked up by wa_id and by user id.

    Built lazily on the first lookup, so a value whose items never ask pays nothing.
    When two entries share a key the first wins, matching Meta's own order.
    """

    __slots__ = ("_by_user", "_by_wa", "_contacts", "_where")

    def __init__(self, contacts: list[Any], where: str) -> None:
        self._contacts = contacts
        self._where = where
        self._by_wa: dict[str, tuple[int, JsonObject]] | None = None
        self._by_user: dict[str, tuple[int, JsonObject]] = {}

    def _build(self) -> dict[str, tuple[int, JsonObject]]:
        by_wa: dict[str, tuple[int, JsonObject]] = {}
        for i, contact in enumerate(self._contacts):
            # A contact that is not an object cannot identify anyone; items whose
            # sender it might have been simply get no contact.
            if contact.__class__ is not dict:
                continue
            wa_id = contact.get("wa_id")
            if wa_id.__class__ is str and wa_id:
                by_wa.setdefault(wa_id, (i, contact))
            user_id = contact.get("user_id")
            if user_id.__class__ is str and user_id:
                self._by_user.setdefault(user_id, (i, contact))
        self._by_wa = by_wa
        return by_wa

    def fill(self, owner: Any, wa_id: str, user_id: str) -> None:
        """Set ``owner.contact`` to the contact whose wa_id equals ``wa_id``, else whose
        user_id equals ``user_id``; leave it unset when none matches."""
        if not self._contacts or not (wa_id or user_id):
            return
        by_wa = self._by_wa if self._by_wa is not None else self._build()
        found = by_wa.get(wa_id) if wa_id else None
        if found is None and user_id:
            found = self._by_user.get(user_id)
        if found is None:
            return
        index, obj = found
        target: common_pb2.Contact = owner.contact
        try:
            _fill_strings(target, obj, _CONTACT_KEYS, "")
            profile = obj.get("profile")
            if profile.__class__ is dict:
                _fill_strings(target, profile, _PROFILE_KEYS, "profile")
            elif profile is not None:
                get_obj(obj, "profile")
        except Malformed as exc:
            # The contact is outside the item: say where it is in the value.
            raise Malformed(f"{self._where}[{index}].{exc.reason}") from None


def _fill_strings(target: Any, obj: JsonObject, keys: Sequence[str], where: str) -> None:
    """Set each of ``keys`` that ``obj`` holds as a non-empty string on ``target``, in
    place (sparing a message and a copy per item); an absent or empty string is not
    assigned (the field is empty already), any other value is Malformed naming the key."""
    for key in keys:
        value = obj.get(key)
        if value.__class__ is str:
            if value:
                setattr(target, key, value)
        elif value is not None:
            get_str(obj, key, where)  # raises Malformed naming the key


def get_errors(obj: JsonObject, key: str, where: str = "") -> list[common_pb2.WhatsAppError]:
    """The ``errors`` array of an object, parsed; absent → []."""
    value = obj.get(key)
    if value is None:
        return []
    path = key_path(where, key)
    if value.__class__ is not list:
        raise Malformed(f"{path}: expected an array, got {describe(value)}")
    return parse_errors(value, path)
