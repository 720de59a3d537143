"""Baseline: a bare Tornado handler that answers 200 to POST /webhook and does nothing else.

The ceiling for any Tornado webhook receiver on one core; wahook's ingest target is 0.9x of it.
Run: ``python bench/baselines/bare_tornado.py --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.web


class WebhookHandler(tornado.web.RequestHandler):
    """Accepts the POST and answers at once; the body is read (Tornado does that) and ignored."""

    def post(self) -> None:
        self.set_status(200)


async def serve(port: int) -> None:
    app = tornado.web.Application([(r"/webhook", WebhookHandler)])
    app.listen(port, address="127.0.0.1", xheaders=False)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default="", help="ignored; accepted so all servers share flags")
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
