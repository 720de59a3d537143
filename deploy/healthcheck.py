"""The image's HEALTHCHECK: GET /healthz on the container's own webhook port; exit 0 when 200.

Standard library only (the image has no curl). The port is $WAHOOK_HTTP_PORT (default 8443),
so configure the container through WAHOOK_* variables rather than `serve` flags. Plain HTTP
is tried first (WAHOOK_INSECURE_HTTP=1): an HTTPS listener drops it at once, and HTTPS is
tried next, without verifying the certificate (it is our own process on loopback, and the
certificate names the public host). Not the other way round: a plain listener would wait
for the end of headers that a TLS ClientHello never sends, until the timeout.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys

TIMEOUT = 4.0  # under the HEALTHCHECK's --timeout


def status(port: int, *, tls: bool) -> int:
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=TIMEOUT, context=ctx
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def main() -> int:
    port = int(os.environ.get("WAHOOK_HTTP_PORT") or "8443")
    try:
        try:
            code = status(port, tls=False)
        except (OSError, http.client.HTTPException):
            code = status(port, tls=True)
    except (OSError, http.client.HTTPException) as exc:
        print(f"healthcheck: http://127.0.0.1:{port}/healthz: {exc}", file=sys.stderr)
        return 1
    print(f"healthcheck: /healthz {code}")
    return 0 if code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
