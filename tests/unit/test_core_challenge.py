"""Meta's GET verification: mode subscribe + matching token → the challenge, verbatim."""

from __future__ import annotations

import pytest
from wahook.core.challenge import verify_challenge
from wahook.errors import VerificationError

TOKEN = "my-verify-token-1"


def query(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "hub.mode": "subscribe",
        "hub.verify_token": TOKEN,
        "hub.challenge": "1158201444",
    }
    base.update({k.replace("_", ".", 1): v for k, v in overrides.items()})
    return {k: v for k, v in base.items() if v is not None}


def test_valid_request_returns_the_challenge() -> None:
    assert verify_challenge(query(), TOKEN) == "1158201444"


@pytest.mark.parametrize(
    "challenge", ["0012", "1e3", "  7 ", "not-a-number", "\uff19"]
)  # last: fullwidth 9
def test_challenge_is_echoed_verbatim_never_parsed(challenge: str) -> None:
    assert verify_challenge(query(hub_challenge=challenge), TOKEN) == challenge


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hub_mode": None}, "hub.mode is missing"),
        ({"hub_mode": "unsubscribe"}, "hub.mode must be 'subscribe'"),
        ({"hub_mode": "Subscribe"}, "hub.mode must be 'subscribe'"),
        ({"hub_verify_token": None}, "hub.verify_token is missing"),
        ({"hub_verify_token": "wrong"}, "hub.verify_token does not match"),
        ({"hub_verify_token": TOKEN + " "}, "hub.verify_token does not match"),
        ({"hub_verify_token": "tökén"}, "hub.verify_token does not match"),
        ({"hub_challenge": None}, "hub.challenge is missing"),
        ({"hub_challenge": ""}, "hub.challenge is missing"),
    ],
)
def test_bad_requests_say_which_parameter(overrides: dict[str, str | None], message: str) -> None:
    with pytest.raises(VerificationError) as info:
        verify_challenge(query(**overrides), TOKEN)
    assert info.value.message == message
    assert info.value.http_status == 403
    assert TOKEN not in str(info.value)


def test_no_configured_token_never_verifies() -> None:
    with pytest.raises(VerificationError, match="no verify token"):
        verify_challenge(query(hub_verify_token=""), "")
