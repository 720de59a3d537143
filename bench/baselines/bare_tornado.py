"""Baseline: a bare Tornado handler that answers 200 to POST /webhook and does nothing else.

The ceiling for any Tornado webhook receiver on one core; wahook's ingest target is 0.9x of it.
Run: ``python bench/baselines/bare_tornado.py --port 8080 [--uvloop]``. With ``--uvloop`` (from
the virtualenv that bench/benchlib/tools.py makes from baselines/tornado_uvloop/requirements.txt)
it shows what swapping asyncio's loop for uvloop buys a Tornado receiver, one of issue 5's ideas.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

import tornado.web


class WebhookHandler(tornado.web.RequestHandler):
    """Accepts the POST and answers at once; the body is read (Tornado does that) and ignored."""

    def post(self) -> None:
        self.set_status(200)


async def serve(port: int, cert: str, key: str) -> None:
    app = tornado.web.Application([(r"/webhook", WebhookHandler)])
    tls = None
    if cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(cert, key)
    app.listen(port, address="127.0.0.1", ssl_options=tls)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default="", help="ignored; accepted so all servers share flags")
    parser.add_argument("--tls-cert", default="", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", default="")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # type: ignore[import-not-found]  # noqa: PLC0415

        uvloop.run(serve(args.port, args.tls_cert, args.tls_key))
    else:
        asyncio.run(serve(args.port, args.tls_cert, args.tls_key))


if __name__ == "__main__":
    main()
