"""Distinct, correctly signed WhatsApp webhook bodies in a realistic mix, pre-made for load tools.

Every body is unique (its wamids carry a per-run prefix and a counter) so that a load run measures
the full path, not the dedupe shortcut. Bodies are compact JSON with non-ASCII escaped, like Meta
sends, and are signed over those exact bytes. The file format read by the wrk script and the Go load
generator is one ``<signature-header-value>\\t<body>`` per line (bodies never contain a newline
or a tab).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

WABA_ID = "105550100000001"
PHONE_NUMBER_ID = "105550100000002"
DISPLAY_PHONE = "15550100001"
BASE_TS = 1_764_200_000

# Share of each kind in the mix. Businesses that send receive mostly statuses; of the inbound
# messages most are text, then replies, media and button taps. Batched statuses stand in for
# Meta's multi-update POSTs.
MIX: dict[str, int] = {
    "status": 35,
    "text": 25,
    "reply": 10,
    "media": 10,
    "interactive": 10,
    "reaction": 5,
    "status_batch": 5,
}

Body = dict[str, Any]


def _hmac_sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _find_signer() -> Callable[[bytes, str], str]:
    # wahook's own signer once the core has landed, so the bench signs exactly as the server checks.
    try:
        from wahook.core.signature import sign as wahook_sign  # noqa: PLC0415
    except ImportError:
        return _hmac_sign
    return lambda body, secret: str(wahook_sign(body, secret))


_signer: Callable[[bytes, str], str] | None = None


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 header value for ``body``."""
    global _signer  # noqa: PLW0603 - resolved once: a failing import per body costs more than the HMAC
    if _signer is None:
        _signer = _find_signer()
    return _signer(body, secret)


def bsuid(wa_id: str) -> str:
    """A made-up business-scoped user id for a phone number, stable within a run."""
    digits = int(hashlib.sha256(wa_id.encode()).hexdigest()[:14], 16) % 10**16
    return f"US.{digits:016d}"


def _envelope(value: dict[str, Any], field: str = "messages") -> Body:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_PHONE, "phone_number_id": PHONE_NUMBER_ID},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }


class _Maker:
    """Builds one body of each kind; ``n`` makes ids unique within a run, ``run`` across runs."""

    def __init__(self, run: str, rng: random.Random) -> None:
        self.run = run
        self.rng = rng

    def wamid(self, n: int, k: int = 0) -> str:
        return f"wamid.HBgL{self.run}{n:09d}{k}"

    def user(self) -> str:
        return f"1555010{self.rng.randrange(10_000):04d}"

    @staticmethod
    def contact(wa_id: str) -> dict[str, Any]:
        # Meta now sends a business-scoped user id (BSUID) beside the phone number.
        return {
            "profile": {"name": f"Bench User {wa_id[-4:]}"},
            "wa_id": wa_id,
            "user_id": bsuid(wa_id),
        }

    def inbound(self, n: int, msg: dict[str, Any]) -> Body:
        wa_id = self.user()
        head = {"from": wa_id, "from_user_id": bsuid(wa_id), "id": self.wamid(n)}
        msg = {**head, "timestamp": str(BASE_TS + n), **msg}
        return _envelope({"contacts": [self.contact(wa_id)], "messages": [msg]})

    def status_item(self, n: int, k: int, state: str) -> dict[str, Any]:
        recipient = self.user()
        item: dict[str, Any] = {
            "id": self.wamid(n, k),
            "status": state,
            "timestamp": str(BASE_TS + n),
            "recipient_id": recipient,
            "recipient_user_id": bsuid(recipient),
        }
        if state != "read":
            item["conversation"] = {"id": f"conv{self.run}{n}", "origin": {"type": "service"}}
            item["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "utility",
            }
        return item

    def statuses_value(self, items: list[dict[str, Any]]) -> Body:
        contacts = [{"wa_id": i["recipient_id"], "user_id": i["recipient_user_id"]} for i in items]
        return _envelope({"contacts": contacts, "statuses": items})

    def status(self, n: int) -> Body:
        state = self.rng.choice(("sent", "delivered", "read"))
        return self.statuses_value([self.status_item(n, 0, state)])

    def status_batch(self, n: int, size: int = 3) -> Body:
        items = [self.status_item(n, k, ("sent", "delivered", "read")[k % 3]) for k in range(size)]
        return self.statuses_value(items)

    def text(self, n: int) -> Body:
        words = ["hello", "order", "status", "please", "thanks", "caf\u00e9", "delivery", "when"]
        body = " ".join(self.rng.choice(words) for _ in range(self.rng.randrange(3, 30)))
        return self.inbound(n, {"type": "text", "text": {"body": body}})

    def reply(self, n: int) -> Body:
        msg = {
            "type": "text",
            "text": {"body": "yes, that one https://example.com/p/1"},
            "context": {"from": DISPLAY_PHONE, "id": self.wamid(max(n - 1, 0), 9)},
        }
        return self.inbound(n, msg)

    def media(self, n: int) -> Body:
        kind = self.rng.choice(("image", "audio", "document", "video"))
        media: dict[str, Any] = {
            "mime_type": {"image": "image/jpeg", "audio": "audio/ogg; codecs=opus"}.get(
                kind, "application/pdf"
            ),
            "sha256": hashlib.sha256(f"{self.run}{n}".encode()).hexdigest(),
            "id": f"{9_000_000_000 + n}",
        }
        if kind == "audio":
            media["voice"] = True
        if kind == "document":
            media["filename"] = f"invoice-{n}.pdf"
        if kind in ("image", "video"):
            media["caption"] = "see attached"
        return self.inbound(n, {"type": kind, kind: media})

    def interactive(self, n: int) -> Body:
        if self.rng.random() < 0.5:
            inter = {"type": "button_reply", "button_reply": {"id": "btn_yes", "title": "Yes"}}
        else:
            inter = {
                "type": "list_reply",
                "list_reply": {"id": "row_2", "title": "Tomorrow", "description": "9:00-12:00"},
            }
        ctx = {"from": DISPLAY_PHONE, "id": self.wamid(max(n - 1, 0), 8)}
        return self.inbound(n, {"type": "interactive", "interactive": inter, "context": ctx})

    def reaction(self, n: int) -> Body:
        emoji = self.rng.choice(("\U0001f44d", "\u2764\ufe0f", "\U0001f602"))
        reaction = {"message_id": self.wamid(max(n - 1, 0), 7), "emoji": emoji}
        return self.inbound(n, {"type": "reaction", "reaction": reaction})


def _kinds(maker: _Maker) -> dict[str, Callable[[int], Body]]:
    return {
        "status": maker.status,
        "text": maker.text,
        "reply": maker.reply,
        "media": maker.media,
        "interactive": maker.interactive,
        "reaction": maker.reaction,
        "status_batch": maker.status_batch,
    }


def encode(body: Body) -> bytes:
    """Compact JSON with non-ASCII escaped (``\\u00e9``), the shape of Meta's bytes."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


def generate(count: int, run: str, seed: int = 5) -> Iterator[tuple[str, bytes]]:
    """``count`` distinct bodies in the realistic mix, as (kind, bytes)."""
    rng = random.Random(seed)
    maker = _Maker(run, rng)
    kinds = _kinds(maker)
    names = list(MIX)
    weights = [MIX[k] for k in names]
    for n in range(count):
        kind = rng.choices(names, weights)[0]
        yield kind, encode(kinds[kind](n))


def statuses_body(run: str, n: int, size: int) -> bytes:
    """One POST carrying ``size`` distinct statuses: how backlogs are preloaded quickly
    (Meta batches up to 1000 updates in one POST)."""
    maker = _Maker(run, random.Random(n))
    states = ("sent", "delivered", "read")
    items = [maker.status_item(n, k, states[k % 3]) for k in range(size)]
    # k runs past 9 here, so keep ids unique with an explicit separator.
    for k, item in enumerate(items):
        item["id"] = f"wamid.HBgL{run}B{n:09d}x{k:04d}"
    return encode(maker.statuses_value(items))


def write_signed_file(path: Path, count: int, secret: str, run: str) -> dict[str, int]:
    """Write ``count`` signed bodies, one ``signature\\tbody`` per line; returns counts per kind."""
    counts = dict.fromkeys(MIX, 0)
    with path.open("wb") as out:
        for kind, body in generate(count, run):
            counts[kind] += 1
            out.write(sign(body, secret).encode() + b"\t" + body + b"\n")
    return counts


def events_per_body(counts: dict[str, int]) -> float:
    """Mean events a body of this mix becomes (a batched-status body is three)."""
    total = sum(counts.values())
    return (total + 2 * counts.get("status_batch", 0)) / max(total, 1)
