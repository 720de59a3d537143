"""Baseline: pywa's built-in Starlette receiver (uvicorn), the popular Python WhatsApp framework.

pywa checks X-Hub-Signature-256 and runs the registered handlers; nothing is stored, so a crash
after the 200 loses the update. Handlers here do nothing, so the figure is pywa's receive path
alone. Two clients of pywa, one script:
- ``pywa`` (default): pywa's sync client, handlers run in the background after the 200; its own
  virtualenv bench/results/.venv-pywa (requirements.txt beside this file).
- ``--async``: ``pywa_async``, what a performance-minded Python team picks: async handlers awaited
  on the loop before the 200, under uvicorn with uvloop and httptools (pinned in
  bench/baselines/pywa_async/requirements.txt, virtualenv bench/results/.venv-pywa-async).
Both virtualenvs are made by bench/benchlib/tools.py, apart from wahook's.
Run: ``python bench/baselines/pywa_starlette/receiver.py --port 8080 --secret SECRET [--async]``.
"""

from __future__ import annotations

import argparse
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--async", dest="use_async", action="store_true", help="pywa_async")
    args = parser.parse_args()
    if args.use_async:
        from pywa_async import WhatsApp  # type: ignore[import-not-found]  # noqa: PLC0415 - the client the flag names
    else:
        from pywa import WhatsApp  # type: ignore[import-not-found]  # noqa: PLC0415
    # Made-up phone id and token: the receiver never calls the Graph API.
    wa = WhatsApp(
        phone_id="105550100000002",
        token="bench-token-not-real",
        verify_token="bench-verify-token",
        app_secret=args.secret,
        webhook_endpoint="/webhook",
    )

    if args.use_async:

        async def ignore(_: Any, __: Any) -> None:
            return None

    else:

        def ignore(_: Any, __: Any) -> None:  # type: ignore[misc]
            return None

    wa.on_message(ignore)
    wa.on_message_status(ignore)
    wa.run(host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
