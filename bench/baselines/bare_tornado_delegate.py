"""Baseline: Tornado's HTTP layer answering 200 to POST /webhook from an HTTPMessageDelegate,
with no tornado.web Application or RequestHandler.

wahook serves ``POST /webhook`` this way (server/wahook/http/webhook_post.py), so this is the
ceiling of its front: whatever wahook does beyond it (verify, normalise, the durable append)
shows as the gap between the two. The issue-5 target stays "0.9x the bare RequestHandler"
(``bare_tornado.py``), the receiver a team would write. Closed loop only.
Run: ``python bench/baselines/bare_tornado_delegate.py --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.httpserver
import tornado.httputil

_BODY = b'{"received": 1, "new": 1}'


class _Request(tornado.httputil.HTTPMessageDelegate):
    """Reads the body (Tornado does that) and answers 200 with a fixed JSON body."""

    def __init__(self, conn: tornado.httputil.HTTPConnection) -> None:
        self.conn = conn

    def finish(self) -> None:
        headers = tornado.httputil.HTTPHeaders()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(_BODY))
        self.conn.write_headers(
            tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), headers, _BODY
        )
        self.conn.finish()


class _Server(tornado.httputil.HTTPServerConnectionDelegate):
    def start_request(
        self, server_conn: object, request_conn: tornado.httputil.HTTPConnection
    ) -> tornado.httputil.HTTPMessageDelegate:
        return _Request(request_conn)


async def serve(port: int) -> None:
    server = tornado.httpserver.HTTPServer(_Server())
    server.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default="", help="ignored; accepted so all servers share flags")
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
