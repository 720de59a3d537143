"""Meta's webhook verification request (GET with hub.mode, hub.verify_token, hub.challenge)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from wahook.errors import VerificationError


def verify_challenge(query: Mapping[str, str], verify_token: str) -> str:
    """Return ``hub.challenge`` verbatim when mode is "subscribe" and the token matches.

    The challenge is echoed as the string received: Meta sends digits, but parsing
    them as a number would change e.g. leading zeros. The token is compared in
    constant time and never echoed in an error.
    """
    if not verify_token:
        raise VerificationError("no verify token is configured")
    mode = query.get("hub.mode")
    if mode is None:
        raise VerificationError("hub.mode is missing")
    if mode != "subscribe":
        raise VerificationError("hub.mode must be 'subscribe'")
    token = query.get("hub.verify_token")
    if token is None:
        raise VerificationError("hub.verify_token is missing")
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        raise VerificationError("hub.verify_token does not match")
    challenge = query.get("hub.challenge")
    if not challenge:
        raise VerificationError("hub.challenge is missing")
    return challenge
