"""X-Hub-Signature-256 verification: HMAC-SHA256 of the raw body against a keyring of app secrets.

Meta signs the exact bytes it sends, which escape non-ASCII text as ``\\u00e9`` and
slashes as ``\\/``; re-serialising the parsed JSON gives different bytes and a
different digest, so callers must pass the body exactly as received. Several
secrets are accepted at once (one per app sharing the endpoint, or old and new
during a rotation); every comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from wahook.errors import ConfigError, SignatureError

try:
    # OpenSSL's HMAC object, as hmac.new builds it, without hmac.HMAC's Python wrapper.
    from _hashlib import HMAC as _HmacState
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # pragma: no cover - CPython built without OpenSSL
    from hmac import HMAC as _HmacState  # type: ignore[assignment]
    from hmac import new as _hmac_new  # type: ignore[assignment]

_PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdef")


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign(body: bytes, secret: str | bytes) -> str:
    """The header value Meta would send for ``body``: ``sha256=<64 lowercase hex>``."""
    return _PREFIX + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


class Keyring:
    """The app secrets a signature may be made with. Never logs or shows them."""

    __slots__ = ("_states",)

    def __init__(self, secrets: Sequence[str | bytes]) -> None:
        if isinstance(secrets, str | bytes):
            # A lone string is a sequence of characters: surely a mistake.
            raise ConfigError("Keyring takes a list of app secrets, not a single string")
        keys = tuple(_key(secret) for secret in secrets)
        if not keys:
            raise ConfigError("no app secret configured: set at least one to verify signatures")
        if any(not key for key in keys):
            raise ConfigError("an app secret is empty")
        # Each key's HMAC state after the key is absorbed, copied per body: keying an
        # HMAC (OpenSSL looks SHA-256 up and hashes both padded keys) was ~11,000 of
        # the ~56,000 instructions of verifying a ~625-byte body.
        self._states: tuple[_HmacState, ...] = tuple(
            _hmac_new(key, digestmod="sha256") for key in keys
        )

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"Keyring(<{len(self._states)} secret(s)>)"

    def verify(self, body: bytes, header: str | None) -> None:
        """Return if ``header`` is a valid signature of ``body`` by any secret; else raise
        SignatureError saying whether it was missing, malformed or wrong."""
        if header is None or not header.strip():
            raise SignatureError("X-Hub-Signature-256 header is missing")
        value = header.strip()
        if not value[: len(_PREFIX)].lower() == _PREFIX:
            raise SignatureError("X-Hub-Signature-256 is malformed: expected 'sha256=<hex>'")
        hexpart = value[len(_PREFIX) :].lower()
        if len(hexpart) != 64 or not _HEX_DIGITS.issuperset(hexpart):
            raise SignatureError(
                "X-Hub-Signature-256 is malformed: expected 64 hexadecimal digits after 'sha256='"
            )
        given = bytes.fromhex(hexpart)
        matched = False
        # Check every secret even after a match, so the time taken does not tell
        # which secret (or how many) a forger got right.
        for state in self._states:
            mac = state.copy()
            mac.update(body)
            matched |= hmac.compare_digest(mac.digest(), given)
        if not matched:
            raise SignatureError("X-Hub-Signature-256 does not match the body for any app secret")
