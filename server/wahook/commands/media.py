"""`wahook media ID`: download a message's media through the sidecar into a file.

The sidecar fetches the file from the Graph API with its access token
(WAHOOK_GRAPH_ACCESS_TOKEN) and checks its SHA-256; the bytes go to ``-o FILE`` (``-``:
standard output; default: the media id plus an extension for its MIME type, in the
current directory) through a temporary file that replaces FILE only when the download
succeeded. Prints one summary line to standard error. Exits 0 on success, 1 when the
sidecar refuses or the download fails (the gRPC status is printed), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import mimetypes
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import grpc

from wahook.client import DownloadedMedia, download_media
from wahook.commands import Connection, UsageError, add_target_option, connection


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "media",
        help="download a message's media (image, audio, video, document, sticker) by id",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("media_id", metavar="ID", help="the media id, e.g. an event's message.image.id")
    p.add_argument("-o", "--output", metavar="FILE", default=None, help="where to write it")
    add_target_option(p)
    p.set_defaults(run=run)


async def _download(conn: Connection, media_id: str, out: Any = None) -> DownloadedMedia:
    return await download_media(
        conn.target, media_id, out=out, token=conn.token, credentials=conn.credentials
    )


async def _to_stdout(conn: Connection, media_id: str) -> DownloadedMedia:
    # Standard output cannot be taken back: buffer the (checked) bytes, then write.
    media = await _download(conn, media_id)
    sys.stdout.buffer.write(media.data)
    sys.stdout.flush()
    return media


async def _to_file(
    conn: Connection, media_id: str, output: str | None, tmp_dir: Path
) -> tuple[DownloadedMedia, Path]:
    fd, tmp_name = tempfile.mkstemp(prefix=".wahook-media-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            media = await _download(conn, media_id, f)
        final = Path(output) if output else Path(media_id + _extension(media.mime_type))
        os.replace(tmp_name, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return media, final


def _extension(mime_type: str) -> str:
    return mimetypes.guess_extension(mime_type.split(";", maxsplit=1)[0].strip()) or ".bin"


def run(args: argparse.Namespace) -> int:
    try:
        conn = connection(args)
    except UsageError as exc:
        print(f"wahook media: {exc}", file=sys.stderr)
        return 2
    try:
        if args.output == "-":
            media = asyncio.run(_to_stdout(conn, args.media_id))
            where = "standard output"
        else:
            # The temporary file sits next to FILE, so the final rename is atomic.
            tmp_dir = Path(args.output).resolve().parent if args.output else Path.cwd()
            media, path = asyncio.run(_to_file(conn, args.media_id, args.output, tmp_dir))
            where = str(path)
    except grpc.aio.AioRpcError as exc:
        print(f"wahook media: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wahook media: {exc}", file=sys.stderr)
        return 1
    print(
        f"wahook media: {media.size} bytes ({media.mime_type or 'unknown type'}, sha256 "
        f"checked) written to {where}",
        file=sys.stderr,
    )
    return 0
