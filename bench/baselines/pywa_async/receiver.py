"""Baseline: pywa's async receiver (``pywa_async``), what a performance-minded Python team picks.

pywa's built-in Starlette app under uvicorn with its C parts: uvloop for the event loop and
httptools for HTTP/1.1 (uvicorn picks both when installed; requirements.txt pins them). pywa
checks X-Hub-Signature-256 and awaits the registered async handlers on the loop before the 200;
nothing is stored, so a crash after the 200 loses the update. The handlers here do nothing, so
the figure is pywa's async receive path alone. Runs in its own virtualenv
(bench/results/.venv-pywa-async, made by bench/benchlib/tools.py from requirements.txt beside
this file), apart from wahook's.
Run: ``python bench/baselines/pywa_async/receiver.py --port 8080 --secret SECRET``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pywa_async import WhatsApp  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    # Made-up phone id and token: the receiver never calls the Graph API.
    wa = WhatsApp(
        phone_id="105550100000002",
        token="bench-token-not-real",
        verify_token="bench-verify-token",
        app_secret=args.secret,
        webhook_endpoint="/webhook",
    )

    @wa.on_message  # type: ignore[untyped-decorator]
    async def on_message(_: Any, __: Any) -> None:
        return None

    @wa.on_message_status  # type: ignore[untyped-decorator]
    async def on_status(_: Any, __: Any) -> None:
        return None

    wa.run(host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
