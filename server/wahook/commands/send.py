"""`wahook send KIND`: post a correctly signed sample webhook (the `stripe trigger` of WhatsApp).

Standard library only (http.client + ssl), so it runs wherever Python does. By default
it reads the dev secret and trusts the dev certificate that `wahook serve --dev` keeps
under the data directory.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from wahook import config as cfg
from wahook import samples, tls
from wahook.core.signature import sign


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "send",
        help="post a signed sample webhook of one kind",
        description=(
            "Post a correctly signed sample WhatsApp webhook with fresh ids. KIND is one of: "
            + ", ".join(samples.KINDS)
            + ", or 'all' for each in turn. Exits 1 when any answer is not 200."
        ),
    )
    p.add_argument("kind", metavar="KIND", type=_kind, help="the sample to post ('all': each)")
    p.add_argument(
        "--to",
        metavar="URL",
        default=None,
        help="webhook URL (default https://127.0.0.1:$WAHOOK_HTTP_PORT/webhook, port 8443)",
    )
    p.add_argument(
        "--secret",
        default=None,
        help="app secret to sign with (default $WAHOOK_APP_SECRET's first, else the dev secret)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where `serve --dev` keeps its files (default $WAHOOK_DATA_DIR or ./var)",
    )
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--cacert", type=Path, default=None, help="trust this PEM certificate")
    trust.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="send N times (fresh ids)")
    p.add_argument(
        "--message-id",
        default=None,
        help="for status-* kinds: the wamid the status is about (default: a fresh one)",
    )
    p.set_defaults(run=run)


# Kinds are spelled as Meta spells the thing (button_reply, status-read); either
# separator is accepted, so nobody has to remember which is which.
_KIND_BY_SPELLING = {k.replace("_", "-"): k for k in (*samples.KINDS, "all")}


def _kind(text: str) -> str:
    kind = _KIND_BY_SPELLING.get(text.replace("_", "-"))
    if kind is None:
        raise argparse.ArgumentTypeError(
            f"unknown kind {text!r}; one of: {', '.join(samples.KINDS)}, all"
        )
    return kind


def _secret(args: argparse.Namespace, data_dir: Path) -> str:
    if args.secret:
        return str(args.secret)
    env_secret = os.environ.get("WAHOOK_APP_SECRET", "").split(",")[0].strip()
    if env_secret:
        return env_secret
    dev_secret = data_dir / cfg.DEV_DIR / cfg.DEV_SECRET_FILE
    try:
        return dev_secret.read_text().strip()
    except OSError:
        raise SystemExit(
            f"wahook send: no secret: pass --secret, set WAHOOK_APP_SECRET, or run "
            f"`wahook serve --dev` (which writes {dev_secret})"
        ) from None


def _connection(url: urllib.parse.SplitResult, args: argparse.Namespace, data_dir: Path) -> Any:
    host, port = url.hostname or "127.0.0.1", url.port
    if url.scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=30)
    cacert = args.cacert
    dev_cert = data_dir / cfg.DEV_DIR / cfg.DEV_CERT_FILE
    if cacert is None and not args.insecure and dev_cert.exists():
        cacert = dev_cert
    ctx = tls.client_context(cacert, insecure=args.insecure)
    return http.client.HTTPSConnection(host, port, timeout=30, context=ctx)


def run(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(os.environ.get("WAHOOK_DATA_DIR") or "./var")
    port = os.environ.get("WAHOOK_HTTP_PORT") or "8443"
    url = urllib.parse.urlsplit(args.to or f"https://127.0.0.1:{port}/webhook")
    secret = _secret(args, data_dir)
    kinds = list(samples.KINDS) if args.kind == "all" else [args.kind]
    conn = _connection(url, args, data_dir)
    failures = 0
    try:
        for _ in range(max(args.repeat, 1)):
            for kind in kinds:
                extra = {"message_id": args.message_id} if kind in samples.STATUS_KINDS else {}
                body = samples.body(kind, **extra)
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(body, secret),
                }
                conn.request("POST", url.path or "/webhook", body=body, headers=headers)
                resp = conn.getresponse()
                answer = resp.read().decode("utf-8", "replace")
                print(f"{kind}: {resp.status} {answer}", flush=True)
                failures += resp.status != 200
    except (OSError, http.client.HTTPException) as exc:
        print(f"wahook send: cannot post to {url.geturl()}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 1 if failures else 0
