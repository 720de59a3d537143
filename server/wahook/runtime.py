"""The running sidecar: one asyncio loop with Tornado's HTTPServer and the grpc.aio server.

``serve(config)`` opens the event log (SQLite under the data directory, or the Redis
Streams log of WAHOOK_STORE that several replicas share), starts gRPC and
HTTP(S), prints one machine-readable line with the bound ports, prunes old events
hourly, and on SIGTERM/SIGINT drains:

SIGHUP (and, checked every few seconds, a change in a ``*_FILE`` the secrets come from)
reloads the secrets: app secrets, verify token, gRPC tokens, Graph API token; a changed
HTTPS certificate and key are loaded at the same looks, gRPC's at its next handshake
(wahook.tls). Nothing else changes without a restart.

1. /readyz and gRPC health turn NOT_SERVING, so a load balancer stops sending;
2. the HTTP listener stops accepting; new POSTs on open connections get 503;
3. POSTs in flight finish (each answered 200 only after its append is durable);
4. the gRPC server stops with a grace period, ending Subscribe streams so their
   unacked events go back to their groups;
5. the log closes (pending writes finish) and ``serve`` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TextIO

import grpc
import tornado.httpserver

from wahook import tls
from wahook.config import Config, is_loopback
from wahook.core.signature import Keyring
from wahook.errors import ConfigError, LogUnavailableError, WahookError
from wahook.http.app import build_deps, make_http_server
from wahook.http.handlers import DEV_NO_SIGNATURE_WARNING, WebhookDeps
from wahook.http.limits import FrontLimits
from wahook.http.metrics import Metrics
from wahook.media import MediaClient
from wahook.rpc.auth import TokenSet
from wahook.rpc.server import RpcHandle, create_server
from wahook.rpc.subscribe import DeliveryStats
from wahook.store.base import EventLog
from wahook.store.redis import RedisEventLog
from wahook.store.redis.append import mask_url
from wahook.store.retention import expire_groups_periodically, prune_periodically
from wahook.store.sqlite import SqliteEventLog
from wahook.workers.handoff import FrontLink, MetricValue
from wahook.workers.supervisor import Supervisor

log = logging.getLogger("wahook")

RETENTION_INTERVAL = 3600.0  # prune hourly: cheap, and retention is counted in days
DRAIN_TIMEOUT = 20.0  # in-flight POSTs get this long to finish (Meta waits ~5 s anyway)
GRPC_GRACE = 5.0  # Subscribe streams get this long to end on their own
SECRET_FILES_EVERY = 5.0  # seconds between looks for changed *_FILE secrets
# /readyz writes and syncs this much under the data directory (SQLite): an empty
# transaction commits on a full disk, so only a real write shows the log cannot grow.
READY_PROBE_BYTES = 64 * 1024


@dataclass
class Listening:
    """Where the sidecar listens, once started."""

    http_url: str
    grpc_target: str

    def line(self) -> str:
        return f"wahook: listening http={self.http_url} grpc={self.grpc_target}"


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on the first address ``host`` resolves to.

    Not tornado.netutil.bind_sockets: it leaves the socket open when bind fails.
    """
    family, _, _, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(addr, family=family, backlog=1024)
    sock.setblocking(False)
    return sock


class Sidecar:
    """The started parts of one sidecar process; ``start`` then ``drain``.

    With ``config.workers`` above 1 the webhook listener runs in that many front
    processes (wahook.workers) and this process keeps the log, gRPC and the rest;
    ``worker_spec`` is what the fronts build their Config from (the serve flags)."""

    def __init__(self, config: Config, worker_spec: dict[str, Any] | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.worker_spec = worker_spec or {}
        self.supervisor: Supervisor | None = None
        self.https: tls.ReloadingServerContext | None = None

    async def start(self) -> Listening:
        config = self.config
        ssl_ctx = None
        if config.insecure_http:
            log.warning("serving plain HTTP (insecure_http): only behind a TLS-terminating proxy")
        else:
            assert config.tls_cert is not None
            assert config.tls_key is not None
            self.https = tls.ReloadingServerContext(config.tls_cert, config.tls_key)
            ssl_ctx = self.https.context
        keyring = _keyring(config)
        grpc_credentials = _grpc_credentials(config)
        self.tokens = TokenSet([t.reveal() for t in config.grpc_tokens])

        # Bind HTTP first: a port in use is the likeliest start failure and needs no cleanup.
        sockets = self._bind_http()
        try:
            self.event_log = await open_event_log(config)
        except BaseException:
            await self._unbind(sockets)
            raise
        self.media = _media_client(config)
        try:
            self.rpc = await create_server(
                self.event_log,
                config.grpc_host,
                config.grpc_port,
                # gRPC binds with SO_REUSEPORT by default: a second sidecar on the same
                # port would start "fine" and take half the subscribers. Refuse instead.
                options=[("grpc.so_reuseport", 0)],
                media=self.media,
                credentials=grpc_credentials,
                tokens=self.tokens,
                max_streams=config.grpc_max_streams,
                stream_max_bytes=config.grpc_stream_max_bytes,
            )
        except BaseException as exc:
            await self._unbind(sockets)
            await self.event_log.close()
            if self.media is not None:
                self.media.close()
            if isinstance(exc, RuntimeError):  # grpc's "Failed to bind to address"
                raise ConfigError(
                    f"cannot listen for gRPC on {config.grpc_host}:{config.grpc_port}: {exc}"
                ) from None
            raise
        event_log, rpc = self.event_log, self.rpc
        _add_store_metrics(self.metrics, event_log)
        if self.media is not None:
            _add_media_metrics(self.metrics, self.media)
        _add_delivery_metrics(self.metrics, rpc)
        self.metrics.add_collector(
            "wahook_grpc_unauthenticated_total",
            "counter",
            "gRPC calls refused for a missing or wrong bearer token.",
            lambda: float(rpc.gate.refused),
        )
        self.deps = build_deps(
            keyring=keyring,
            event_log=event_log,
            verify_token=config.verify_token.reveal() if config.verify_token else None,
            max_body_bytes=config.max_body_bytes,
            metrics=self.metrics,
            ready=self._ready,
            access_log=config.access_log,
            allowed_phone_number_ids=config.allowed_phone_number_ids,
            allowed_waba_ids=config.allowed_waba_ids,
        )
        limits = _front_limits(config)
        if self.supervisor is not None:
            http_port = await self._start_fronts(self.supervisor, limits)
        else:
            log.info("webhook listener: at most %d connections", limits.connection_cap())
            self.http_server = make_http_server(self.deps, ssl_ctx, limits=limits)
            self.http_server.add_sockets(sockets)
            http_port = sockets[0].getsockname()[1]
        host = config.http_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 (a comparison, not a bind)
            host = "127.0.0.1"
        self.pruner = asyncio.create_task(
            prune_periodically(event_log, max_age=config.retention, every=RETENTION_INTERVAL)
        )
        self.expirer = asyncio.create_task(expire_groups_periodically(event_log, rpc.hub.groups))
        return Listening(
            http_url=f"{config.http_scheme}://{host}:{http_port}",
            grpc_target=f"{config.grpc_host}:{rpc.port}",
        )

    def _bind_http(self) -> list[socket.socket]:
        """The listening socket; none with --workers, whose fronts bind the port that
        the Supervisor holds for them (wahook.workers.supervisor)."""
        config = self.config
        if config.workers > 1:
            log.info("%d webhook front processes (--workers) over one event log", config.workers)
            self.supervisor = Supervisor(
                config.workers,
                config.http_host,
                config.http_port,
                self.worker_spec,
                self._front_link,
                event_loop=config.event_loop,
            )
            return []
        try:
            return [_listen(config.http_host, config.http_port)]
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {config.http_host}:{config.http_port}: {exc.strerror}"
            ) from None

    async def _unbind(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            sock.close()
        if self.supervisor is not None:
            await self.supervisor.stop()

    async def _start_fronts(self, supervisor: Supervisor, limits: FrontLimits) -> int:
        """Start the --workers fronts; the port they listen on."""
        self.metrics.add_collector(
            "wahook_workers",
            "gauge",
            "Webhook front processes running (--workers).",
            lambda: float(supervisor.alive()),
        )
        self.metrics.add_collector(
            "wahook_worker_restarts_total",
            "counter",
            "Webhook front processes started again after they exited.",
            lambda: float(supervisor.restarts),
        )
        log.info("webhook listener: at most %d connections per worker", limits.connection_cap())
        try:
            await supervisor.start()
        except BaseException:
            await self._stop_started()
            raise
        return supervisor.port

    def _front_link(self, on_hello: Callable[[int], None]) -> FrontLink:
        """This process's end of a front's channel: its appends go to the SQLite writer
        (with Redis the fronts append themselves), /readyz and /metrics are this
        process's."""
        event_log = self.event_log
        append_many = event_log.append_rows_many if isinstance(event_log, SqliteEventLog) else None
        return FrontLink(append_many, self._ready, self._collected, on_hello=on_hello)

    def _collected(self) -> list[MetricValue]:
        return [
            (name, kind, text, read())
            for name, (kind, text, read) in self.metrics.collectors.items()
        ]

    async def _stop_started(self) -> None:
        await self.rpc.shutdown(0)
        await self.event_log.close()
        if self.media is not None:
            self.media.close()

    async def _ready(self) -> None:
        # Draining covers gRPC too: its health goes NOT_SERVING at the same moment.
        if self.deps.drain.draining:
            raise LogUnavailableError("shutting down")
        await self.event_log.check_writable()
        if self.config.store_url is None:
            await asyncio.to_thread(_probe_write, self.config.data_dir)

    def reload_certificates(self) -> None:
        """The HTTPS certificate again if its files changed (gRPC's reloads itself)."""
        if self.https is not None and self.supervisor is None:
            self.https.reload_if_changed()

    def reload_secrets(self, new: Config) -> None:
        """Use ``new``'s secrets from now on; its other settings need a restart."""
        old = self.config
        changed = reload_front_secrets(self.deps, old, new)
        if new.grpc_tokens != old.grpc_tokens:
            if bool(new.grpc_tokens) != bool(old.grpc_tokens):
                log.warning("turning gRPC tokens on or off needs a restart; kept as they were")
            else:
                self.tokens.replace([t.reveal() for t in new.grpc_tokens])
                changed.append("gRPC tokens")
        if new.graph_access_token != old.graph_access_token:
            if self.media is not None and new.graph_access_token is not None:
                self.media.replace_token(new.graph_access_token)
                changed.append("Graph API token")
            else:
                log.warning("turning the Graph API token on or off needs a restart")
        if changed:
            self.config = new
            log.info("secrets reloaded: %s", ", ".join(changed))

    async def drain(self) -> None:
        """Stop in the order the module docstring gives."""
        log.info("draining: not serving, finishing in-flight requests")
        self.deps.drain.start()
        await self.rpc.health.enter_graceful_shutdown()
        if self.supervisor is not None:
            # Each front drains as below, its appends served by this process's log.
            await self.supervisor.stop()
        else:
            await drain_http(self.http_server, self.deps)
        await self.rpc.shutdown(GRPC_GRACE)
        for task in (self.pruner, self.expirer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.event_log.close()
        if self.media is not None:
            self.media.close()
        log.info("stopped")


async def drain_http(http_server: tornado.httpserver.HTTPServer, deps: WebhookDeps) -> None:
    """Steps 2 and 3 of the module docstring's drain: stop accepting, let the POSTs in flight
    finish (each answered after its append), then close what is left open."""
    http_server.stop()
    running = await deps.drain.wait(DRAIN_TIMEOUT)
    if running:
        log.warning("drain: %d webhook requests still running after %gs", running, DRAIN_TIMEOUT)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(http_server.close_all_connections(), 2.0)


def reload_front_secrets(deps: WebhookDeps, old: Config, new: Config) -> list[str]:
    """The webhook front's secrets (app secrets, verify token) from ``new``; what changed."""
    changed = []
    if new.app_secrets != old.app_secrets and not old.dev_no_signature:
        deps.keyring = Keyring([s.reveal() for s in new.app_secrets])
        changed.append("app secrets")
    if new.verify_token != old.verify_token:
        deps.verify_token = new.verify_token.reveal() if new.verify_token else None
        changed.append("verify token")
    return changed


def _keyring(config: Config, *, quiet: bool = False) -> Keyring | None:
    """The app secrets' keyring (None: dev-only no-signature mode), with warnings about
    what is off unless ``quiet``."""
    if config.verify_token is None and not quiet:
        log.warning("no verify token configured: GET /webhook verification will answer 403")
    if config.dev_no_signature:
        if not quiet:
            log.warning(DEV_NO_SIGNATURE_WARNING)
        return None
    return Keyring([s.reveal() for s in config.app_secrets])


def _front_limits(config: Config) -> FrontLimits:
    return FrontLimits(
        max_connections=config.http_max_connections,
        idle_timeout=config.http_idle_timeout,
        header_timeout=config.http_header_timeout,
        body_timeout=config.http_body_timeout,
    )


def _grpc_credentials(config: Config) -> grpc.ServerCredentials | None:
    """gRPC's TLS (None: plain text), warning when nothing authenticates its callers."""
    if (
        not config.grpc_tokens
        and config.grpc_tls_client_ca is None
        and not is_loopback(config.grpc_host)
    ):
        log.warning(
            "gRPC on %s without a token or client certificates "
            "(WAHOOK_GRPC_ALLOW_UNAUTHENTICATED): anyone reaching the port reads every event",
            config.grpc_host,
        )
    if config.grpc_tls_cert is None or config.grpc_tls_key is None:
        return None
    return tls.grpc_server_credentials(
        config.grpc_tls_cert, config.grpc_tls_key, config.grpc_tls_client_ca
    )


def _probe_write(data_dir: os.PathLike[str]) -> None:
    path = os.path.join(data_dir, ".ready-probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * READY_PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as exc:
        raise LogUnavailableError(f"the data directory takes no writes: {exc.strerror}") from None


class Reloadable(Protocol):
    """What ``_reload_on`` reloads: a Sidecar, or a --workers front (wahook.workers)."""

    config: Config

    def reload_secrets(self, new: Config) -> None: ...

    def reload_certificates(self) -> None: ...


async def _reload_on(
    sidecar: Reloadable, reload: Callable[[], Config], hup: asyncio.Event, every: float
) -> None:
    """Reload the secrets on SIGHUP (``hup``) and whenever a reload would change them, and
    the HTTPS certificate whenever its files changed."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hup.wait(), every)
        asked = hup.is_set()
        hup.clear()
        sidecar.reload_certificates()
        try:
            new = reload()
        except WahookError as exc:
            # Keep serving with the secrets in use: a half-written file is retried.
            log.warning("secrets not reloaded: %s", exc.message)
            continue
        if asked or _secrets(new) != _secrets(sidecar.config):
            sidecar.reload_secrets(new)


def _on_hup(sidecar: Sidecar, hup: asyncio.Event) -> None:
    hup.set()
    if sidecar.supervisor is not None:  # the fronts reload their own (app secrets, token)
        sidecar.supervisor.signal_all(signal.SIGHUP)


def _secrets(c: Config) -> tuple[object, ...]:
    return (c.app_secrets, c.verify_token, c.grpc_tokens, c.graph_access_token)


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    out: TextIO | None = None,
    reload: Callable[[], Config] | None = None,
    reload_every: float = SECRET_FILES_EVERY,
    worker_spec: dict[str, Any] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then drain; returns the exit code.
    ``reload`` builds the Config again (from the same flags and environment) for SIGHUP
    and changed secret files. ``worker_spec``: see ``Sidecar``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    sidecar = Sidecar(config, worker_spec)
    listening = await sidecar.start()
    # Everything made so far (modules, descriptors, the app) lives as long as the process:
    # moved out of the collector's reach, a full collection under load no longer scans it
    # and pauses the loop far less (docs/decisions/0019-gc-freeze.md).
    gc.collect()
    gc.freeze()
    print(listening.line(), file=out or sys.stdout, flush=True)
    log.info("started: data_dir=%s %s", config.data_dir, listening.line())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hup = asyncio.Event()
    reloader = None
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, partial(_on_hup, sidecar, hup))
        reloader = asyncio.create_task(_reload_on(sidecar, reload, hup, reload_every))
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if reloader is not None:
            reloader.cancel()
        await sidecar.drain()
    return 0


async def open_event_log(config: Config) -> EventLog:
    """The event log ``config.store_url`` names: Redis Streams, or SQLite by default."""
    if config.store_url is None:
        return await SqliteEventLog.open(config.db_path)
    url = config.store_url.reveal()
    log.info(
        "event log: Redis Streams at %s, key prefix %r%s",
        mask_url(url),
        config.redis_prefix,
        f", {config.redis_wait_replicas} replica(s) acknowledge each append"
        if config.redis_wait_replicas
        else "",
    )
    return await RedisEventLog.open(
        url, prefix=config.redis_prefix, wait_replicas=config.redis_wait_replicas
    )


def _add_store_metrics(metrics: Metrics, event_log: EventLog) -> None:
    if isinstance(event_log, RedisEventLog):
        redis_log = event_log
        metrics.add_collector(
            "wahook_store_commits_total",
            "counter",
            "Append scripts run on Redis (client-side group commit).",
            lambda: float(redis_log.metrics().commits),
        )
        return
    if not isinstance(event_log, SqliteEventLog):  # pragma: no cover - two backends
        return
    metrics.add_collector(
        "wahook_store_commits_total",
        "counter",
        "Transactions committed by the event log's writer (group commit).",
        lambda: float(event_log.metrics().commits),
    )
    metrics.add_collector(
        "wahook_store_largest_batch",
        "gauge",
        "Most write operations committed in one transaction.",
        lambda: float(event_log.metrics().largest_batch),
    )


# Every DeliveryStats counter on /metrics: (metric, field, help).
DELIVERY_COUNTERS = (
    (
        "wahook_events_delivered_total",
        "delivered",
        "Events sent to subscribers, redeliveries included.",
    ),
    (
        "wahook_events_redelivered_total",
        "redelivered",
        "Events sent to subscribers again (attempt above 1).",
    ),
    (
        "wahook_acks_total",
        "acked",
        "Acks subscribers sent (as sent: for events known, expired or unknown).",
    ),
    ("wahook_nacks_total", "nacked", "Nacks subscribers sent."),
    ("wahook_grpc_streams_opened_total", "streams_opened", "Subscribe streams opened."),
    (
        "wahook_events_dead_lettered_total",
        "dead_lettered",
        "Events moved to a consumer group's dead letters (attempts spent, or too large"
        " for the subscriber).",
    ),
)


def _add_delivery_metrics(metrics: Metrics, rpc: RpcHandle) -> None:
    stats = rpc.delivery_stats()
    for name, counter, text in DELIVERY_COUNTERS:
        metrics.add_collector(name, "counter", text, partial(_stat, stats, counter))
    metrics.add_collector(
        "wahook_grpc_subscribers",
        "gauge",
        "Open Subscribe streams.",
        lambda: float(rpc.connected_subscribers()),
    )


def _stat(stats: DeliveryStats, counter: str) -> float:
    return float(getattr(stats, counter))


def _media_client(config: Config) -> MediaClient | None:
    """DownloadMedia's Graph API client; None (the rpc answers FAILED_PRECONDITION) without
    an access token."""
    if config.graph_access_token is None:
        return None
    log.info(
        "media download on: %s/%s, up to %d bytes a file",
        config.graph_base_url,
        config.graph_api_version,
        config.media_max_bytes,
    )
    return MediaClient(
        config.graph_access_token,
        base_url=config.graph_base_url,
        api_version=config.graph_api_version,
        max_bytes=config.media_max_bytes,
    )


def _add_media_metrics(metrics: Metrics, media: MediaClient) -> None:
    stats = media.stats
    metrics.add_collector(
        "wahook_media_downloads_total",
        "counter",
        "DownloadMedia calls that ended with every byte checked against Meta's sha256.",
        lambda: float(stats.completed),
    )
    metrics.add_collector(
        "wahook_media_download_failures_total",
        "counter",
        "DownloadMedia calls that ended with an error (Graph API refusal, size, digest).",
        lambda: float(stats.failed),
    )
    metrics.add_collector(
        "wahook_media_bytes_received_total",
        "counter",
        "Media bytes received from the Graph API.",
        lambda: float(stats.bytes_received),
    )
