"""Baseline: a Tornado handler that checks X-Hub-Signature-256 over the raw body and parses JSON.

The least a receiver must do to be safe, without normalising or storing anything; it shows how
much of wahook's cost is verification and parsing and how much is the rest of the path.
Run: ``python bench/baselines/hmac_json_tornado.py --port 8080 --secret SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json

import tornado.web


class WebhookHandler(tornado.web.RequestHandler):
    """401 unless the signature matches (constant time), 400 unless the body is a JSON object."""

    def initialize(self, secret: bytes) -> None:
        self.secret = secret

    def post(self) -> None:
        header = self.request.headers.get("X-Hub-Signature-256", "")
        expected = "sha256=" + hmac.new(self.secret, self.request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(header.encode(), expected.encode()):
            self.set_status(401)
            return
        try:
            payload = json.loads(self.request.body)
        except ValueError:
            self.set_status(400)
            return
        self.set_status(200 if isinstance(payload, dict) else 400)


async def serve(port: int, secret: str) -> None:
    app = tornado.web.Application([(r"/webhook", WebhookHandler, {"secret": secret.encode()})])
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.secret))


if __name__ == "__main__":
    main()
