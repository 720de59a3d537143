"""Baseline: pywa's built-in Starlette receiver (uvicorn), the popular Python WhatsApp framework.

pywa checks X-Hub-Signature-256, answers 200 and runs the registered handlers in the background;
nothing is stored, so a crash after the 200 loses the update. Handlers here do nothing, so the
figure is pywa's receive path alone. Runs in its own virtualenv (bench/results/.venv-pywa, made by
bench/benchlib/tools.py from requirements.txt beside this file), apart from wahook's.
Run: ``python bench/baselines/pywa_starlette/receiver.py --port 8080 --secret SECRET``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pywa import WhatsApp  # type: ignore[import-not-found]


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
    def on_message(_: Any, __: Any) -> None:
        return None

    @wa.on_message_status  # type: ignore[untyped-decorator]
    def on_status(_: Any, __: Any) -> None:
        return None

    wa.run(host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
