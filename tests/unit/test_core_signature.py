"""X-Hub-Signature-256 verification against a keyring: rotation, several apps, bad headers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from wahook.core.signature import Keyring, sign
from wahook.errors import ConfigError, SignatureError

# Meta's bytes: non-ASCII escaped as \u00e9 and "/" as "\/".
RAW = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"100000000000001","changes":[{"value":'
    b'{"messages":[{"from":"15550101001","id":"wamid.SIG1","text":{"body":"caf\\u00e9 \\/ ok"},'
    b'"type":"text","timestamp":"1764000000"}]},"field":"messages"}]}]}'
)
OLD, NEW, OTHER_APP = "old-app-secret-1", "new-app-secret-2", b"other-app-secret-3"


def test_sign_is_hmac_sha256_hex_of_the_raw_bytes() -> None:
    expected = hmac.new(OLD.encode(), RAW, hashlib.sha256).hexdigest()
    assert sign(RAW, OLD) == "sha256=" + expected
    assert sign(RAW, OLD.encode()) == sign(RAW, OLD)


def test_a_signature_by_any_secret_of_the_keyring_is_accepted() -> None:
    ring = Keyring([OLD, NEW, OTHER_APP])
    assert len(ring) == 3
    for secret in (OLD, NEW, OTHER_APP):
        ring.verify(RAW, sign(RAW, secret))


def test_rotation_old_secret_rejected_once_removed() -> None:
    Keyring([OLD, NEW]).verify(RAW, sign(RAW, OLD))
    with pytest.raises(SignatureError, match="does not match"):
        Keyring([NEW]).verify(RAW, sign(RAW, OLD))


def test_hex_is_accepted_in_upper_case_and_prefix_case_insensitive() -> None:
    header = sign(RAW, NEW)
    Keyring([NEW]).verify(RAW, "SHA256=" + header[len("sha256=") :].upper())
    Keyring([NEW]).verify(RAW, f"  {header} ")


def test_reserialised_json_does_not_verify() -> None:
    # Parsing and dumping again changes the bytes (unescaped é, "/" not escaped):
    # the signature is over what Meta sent, so the receiver must keep the raw body.
    reserialised = json.dumps(json.loads(RAW), ensure_ascii=False, separators=(",", ":"))
    assert reserialised.encode() != RAW
    with pytest.raises(SignatureError, match="does not match"):
        Keyring([NEW]).verify(reserialised.encode(), sign(RAW, NEW))


def test_one_changed_byte_fails() -> None:
    header = sign(RAW, NEW)
    with pytest.raises(SignatureError, match="does not match"):
        Keyring([NEW]).verify(RAW.replace(b"ok", b"oK"), header)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(SignatureError, match="missing") as info:
        Keyring([NEW]).verify(RAW, header)
    assert info.value.http_status == 401


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("sha1=" + "0" * 40, "expected 'sha256=<hex>'"),
        ("0" * 64, "expected 'sha256=<hex>'"),
        ("sha256=", "64 hexadecimal digits"),
        ("sha256=" + "0" * 63, "64 hexadecimal digits"),
        ("sha256=" + "0" * 65, "64 hexadecimal digits"),
        ("sha256=" + "g" * 64, "64 hexadecimal digits"),
        ("sha256=" + "0" * 62 + " 0", "64 hexadecimal digits"),
        ("sha256=" + "\u0660" * 64, "64 hexadecimal digits"),
    ],
)
def test_malformed_header(header: str, why: str) -> None:
    with pytest.raises(SignatureError, match="malformed") as info:
        Keyring([NEW]).verify(RAW, header)
    assert why in info.value.message


def test_errors_never_show_a_secret_or_the_expected_digest() -> None:
    digests = [sign(RAW, s) for s in (OLD, NEW)]
    for header in (None, "sha256=zz", "sha256=" + "0" * 64):
        with pytest.raises(SignatureError) as info:
            Keyring([OLD, NEW]).verify(RAW, header)
        text = str(info.value) + repr(info.value)
        for secret in (OLD, NEW):
            assert secret not in text
        for digest in digests:
            assert digest[7:] not in text
    assert OLD not in repr(Keyring([OLD]))


@pytest.mark.parametrize("secrets", [[], [""], [OLD, b""]])
def test_empty_keyring_or_secret_is_a_config_error(secrets: list[str | bytes]) -> None:
    with pytest.raises(ConfigError):
        Keyring(secrets)


def test_a_bare_string_is_not_taken_as_a_list_of_one_char_secrets() -> None:
    with pytest.raises(ConfigError, match="not a single string"):
        Keyring(OLD)
