"""The sidecar's configuration: one frozen Config built from flags, WAHOOK_* variables and files.

Precedence, highest first: command-line flags, ``WAHOOK_*`` environment variables,
``--dev`` defaults (generated under the data directory), built-in defaults. A secret
(``app_secret``, ``verify_token``, ``graph_access_token``, and ``store``, whose Redis URL
may carry a password) may also come from a file (``*_FILE``); a value and a file for the
same secret at the same level is an error rather than a silent pick.

The environment is passed in as a Mapping (never read from ``os.environ`` here) so
tests and embedders decide what the sidecar sees. Secrets are wrapped in ``Secret``,
whose repr and str never show the value, so a logged Config leaks nothing.

``OPTIONS`` is the single table of settings: ``wahook serve`` builds its flags from it
and the README's configuration table is copied from it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wahook.errors import ConfigError

MIB = 1024 * 1024

# Files `wahook serve --dev` keeps under the data directory; `wahook send` reads them.
DEV_DIR = "dev"
DEV_SECRET_FILE = "app_secret"  # noqa: S105 (a file name, not a secret)
DEV_TOKEN_FILE = "verify_token"  # noqa: S105 (a file name, not a secret)
DEV_CERT_FILE = "cert.pem"
DEV_KEY_FILE = "key.pem"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Secret:
    """A secret string that does not show itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is used (HMAC key, comparison)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        # Equality lets frozen Configs compare in tests; it is not used on request paths.
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_duration(text: str) -> float:
    """ "7d", "12h", "30m", "45s" or plain seconds → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 45s)")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r} (use 1 or 0)")


def parse_port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return port


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([kKmM]i?[bB]?)?\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use bytes, or e.g. 512KiB, 4MiB)")
    unit = (m.group(2) or "").lower()[:1]
    value = int(m.group(1)) * {"": 1, "k": 1024, "m": MIB}[unit]
    if value < 1:
        raise ValueError("size must be at least 1 byte")
    return value


def parse_base_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", url):
        raise ValueError(f"not an http(s) base URL: {text!r} (e.g. https://graph.facebook.com)")
    return url


def parse_api_version(text: str) -> str:
    version = text.strip()
    if not re.fullmatch(r"v\d+\.\d+", version):
        raise ValueError(f"not a Graph API version: {text!r} (e.g. v24.0)")
    return version


def parse_store(text: str) -> str:
    """``sqlite``, or the URL of the Redis every replica shares (kept verbatim: it may
    carry a password, so it is only ever shown through ``redis_streams.mask_url``)."""
    value = text.strip()
    if value.lower() == "sqlite":
        return "sqlite"
    if re.fullmatch(r"(rediss?|unix)://\S+", value):
        return value
    # Not echoed: a mistyped URL may still carry the password.
    raise ValueError("not sqlite or a Redis URL (redis://[:password@]host:port/db or rediss://)")


def parse_redis_prefix(text: str) -> str:
    prefix = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:{}-]+", prefix):
        raise ValueError(f"not a Redis key prefix: {text!r} (letters, digits, _ . : - {{ }})")
    return prefix


def parse_count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more: {value}")
    return value


def parse_connections(text: str) -> int:
    """A connection cap, or ``auto`` (0): the process's file descriptor limit allows."""
    if text.strip().lower() == "auto":
        return 0
    value = int(text)
    if value < 1:
        raise ValueError(f"must be auto or at least 1: {value}")
    return value


def parse_timeout(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be more than 0 seconds: {text!r}")
    return seconds


def parse_id_list(text: str) -> frozenset[str]:
    """Comma-separated numeric Meta ids (phone number ids, WABA ids)."""
    ids = frozenset(part.strip() for part in text.split(",") if part.strip())
    for one in ids:
        if not one.isdigit() or len(one) > 32:
            raise ValueError(f"not a numeric id: {one!r}")
    return ids


def parse_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {text!r} (one of {', '.join(LOG_LEVELS)})")
    return level


ACCESS_LOG_CHOICES = ("all", "errors", "off")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def parse_event_loop(text: str) -> str:
    which = text.strip().lower()
    if which not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {text!r} (one of {', '.join(EVENT_LOOPS)})")
    return which


def parse_access_log(text: str) -> str:
    which = text.strip().lower()
    if which not in ACCESS_LOG_CHOICES:
        raise ValueError(
            f"unknown access log choice {text!r} (one of {', '.join(ACCESS_LOG_CHOICES)})"
        )
    return which


@dataclass(frozen=True)
class Option:
    """One setting: its Config attribute, flag, environment variable, default and meaning."""

    name: str
    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str
    is_flag: bool = False  # a boolean switch: `--x` on the command line, `=1` in the environment
    secret_file: bool = False  # also readable from a file: --NAME-file / ENV_FILE
    metavar: str = "VALUE"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("app_secret", "WAHOOK_APP_SECRET", None,
           "Meta App Secret(s) that sign webhooks; comma-separated for rotation or several apps",
           secret_file=True, metavar="SECRET"),
    Option("verify_token", "WAHOOK_VERIFY_TOKEN", None,
           "token Meta echoes in the GET /webhook verification; unset: verification answers 403",
           secret_file=True, metavar="TOKEN"),
    Option("http_host", "WAHOOK_HTTP_HOST", "0.0.0.0",  # noqa: S104 (Meta must reach the webhook)
           "address of the webhook listener (Meta must reach it); --dev: 127.0.0.1",
           metavar="HOST"),
    Option("http_port", "WAHOOK_HTTP_PORT", "8443", "webhook listener port (0: any free port)",
           parse_port, metavar="PORT"),
    Option("grpc_host", "WAHOOK_GRPC_HOST", "127.0.0.1",
           "address of the gRPC EventService (loopback: only the pod's containers)",
           metavar="HOST"),
    Option("grpc_port", "WAHOOK_GRPC_PORT", "50051", "gRPC port (0: any free port)", parse_port,
           metavar="PORT"),
    Option("grpc_token", "WAHOOK_GRPC_TOKEN", None,
           "bearer token(s) every gRPC call but health must send (authorization: Bearer ...); "
           "comma-separated to accept several while rotating", secret_file=True,
           metavar="TOKEN"),
    Option("grpc_tls_cert", "WAHOOK_GRPC_TLS_CERT", None,
           "PEM certificate chain: serve gRPC over TLS", metavar="FILE"),
    Option("grpc_tls_key", "WAHOOK_GRPC_TLS_KEY", None, "PEM private key of the gRPC "
           "certificate", metavar="FILE"),
    Option("grpc_tls_client_ca", "WAHOOK_GRPC_TLS_CLIENT_CA", None,
           "PEM CA bundle: gRPC clients must present a certificate it signed (mutual TLS)",
           metavar="FILE"),
    Option("grpc_allow_unauthenticated", "WAHOOK_GRPC_ALLOW_UNAUTHENTICATED", "0",
           "serve gRPC on a non-loopback address with neither a token nor client "
           "certificates (refused otherwise); logged at WARNING", parse_bool, is_flag=True),
    Option("grpc_max_streams", "WAHOOK_GRPC_MAX_STREAMS", "100",
           "open Subscribe streams at most; more get RESOURCE_EXHAUSTED", parse_count,
           metavar="N"),
    Option("grpc_stream_max_bytes", "WAHOOK_GRPC_STREAM_MAX_BYTES", "4MiB",
           "event bytes one Subscribe stream may have sent and not acked (with max_in_flight, "
           "what a stalled reader can make the sidecar hold)", parse_size, metavar="SIZE"),
    Option("data_dir", "WAHOOK_DATA_DIR", "./var", "directory of the event log (and --dev files)",
           metavar="DIR"),
    Option("store", "WAHOOK_STORE", "sqlite",
           "event log: sqlite (a file under the data directory) or the URL of a Redis that "
           "several replicas share, redis://[:password@]host:port/db (rediss:// for TLS); the "
           "password is masked in logs. See Scaling out with Redis Streams",
           parse_store, secret_file=True, metavar="STORE"),
    Option("redis_prefix", "WAHOOK_REDIS_PREFIX", "wahook",
           "prefix of the Redis event log's keys (deployments sharing one Redis use different "
           "ones)", parse_redis_prefix, metavar="PREFIX"),
    Option("redis_wait_replicas", "WAHOOK_REDIS_WAIT_REPLICAS", "0",
           "Redis replicas that must acknowledge each append (WAIT, 1 s) before the 200; 0: "
           "the Redis server's persistence settings alone decide", parse_count, metavar="N"),
    Option("tls_cert", "WAHOOK_TLS_CERT", None, "PEM certificate chain for HTTPS",
           metavar="FILE"),
    Option("tls_key", "WAHOOK_TLS_KEY", None, "PEM private key for HTTPS", metavar="FILE"),
    Option("insecure_http", "WAHOOK_INSECURE_HTTP", "0",
           "serve plain HTTP (only behind a TLS-terminating proxy); logged at WARNING",
           parse_bool, is_flag=True),
    Option("http_max_connections", "WAHOOK_HTTP_MAX_CONNECTIONS", "auto",
           "open webhook connections at most; at the cap the longest idle one is closed, or "
           "accepting pauses. auto: 1,000, or the file descriptor limit less 128 when lower",
           parse_connections, metavar="N"),
    Option("http_idle_timeout", "WAHOOK_HTTP_IDLE_TIMEOUT", "75s",
           "a connection with no request started for this long is closed", parse_timeout,
           metavar="DURATION"),
    Option("http_header_timeout", "WAHOOK_HTTP_HEADER_TIMEOUT", "10s",
           "a request's headers must arrive within this long of its first byte, or the "
           "connection is closed", parse_timeout, metavar="DURATION"),
    Option("http_body_timeout", "WAHOOK_HTTP_BODY_TIMEOUT", "30s",
           "a request's body must arrive within this long of its headers, or the connection "
           "is closed", parse_timeout, metavar="DURATION"),
    Option("max_body_bytes", "WAHOOK_MAX_BODY_BYTES", "4MiB",
           "largest webhook body accepted; larger gets 413 (Meta sends up to 3 MB)", parse_size,
           metavar="SIZE"),
    Option("retention", "WAHOOK_RETENTION", "7d",
           "prune events older than this once every group acked them, with their status "
           "history (e.g. 7d, 12h)",
           parse_duration, metavar="DURATION"),
    Option("log_level", "WAHOOK_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", parse_level,
           metavar="LEVEL"),
    Option("event_loop", "WAHOOK_EVENT_LOOP", "auto",
           "the asyncio event loop: uvloop (in C: less CPU per POST), asyncio (the standard "
           "library's) or auto (uvloop when installed, as it is by default)", parse_event_loop,
           metavar="LOOP"),
    Option("access_log", "WAHOOK_ACCESS_LOG", "errors",
           "access log lines (logger wahook.access, INFO): all requests, errors (answers of "
           "400 and up) or off; --dev: all", parse_access_log, metavar="WHICH"),
    Option("graph_access_token", "WAHOOK_GRAPH_ACCESS_TOKEN", None,
           "Graph API access token (a system user's, with whatsapp_business_messaging) for "
           "DownloadMedia; unset: DownloadMedia answers FAILED_PRECONDITION",
           secret_file=True, metavar="TOKEN"),
    Option("graph_base_url", "WAHOOK_GRAPH_BASE_URL", "https://graph.facebook.com",
           "Graph API base URL (media downloads)", parse_base_url, metavar="URL"),
    Option("graph_api_version", "WAHOOK_GRAPH_API_VERSION", "v24.0",
           "Graph API version in media download paths (v24.0: October 2025)",
           parse_api_version, metavar="VERSION"),
    Option("media_max_bytes", "WAHOOK_MEDIA_MAX_BYTES", "100MiB",
           "largest media file DownloadMedia serves; larger: FAILED_PRECONDITION (Meta's own "
           "limit is 100 MB)", parse_size, metavar="SIZE"),
    Option("allowed_phone_number_ids", "WAHOOK_ALLOWED_PHONE_NUMBER_IDS", None,
           "comma-separated phone number ids this sidecar serves; an event for another is "
           "still stored but flagged, counted and logged once per number", parse_id_list,
           metavar="IDS"),
    Option("allowed_waba_ids", "WAHOOK_ALLOWED_WABA_IDS", None,
           "comma-separated WhatsApp Business Account ids, as the phone number ids",
           parse_id_list, metavar="IDS"),
    Option("dev_no_signature", "WAHOOK_DEV_NO_SIGNATURE", "0",
           "DEV ONLY: skip the X-Hub-Signature-256 check (warns on every request)",
           parse_bool, is_flag=True),
)  # fmt: skip

OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Everything `wahook serve` needs, validated. Secrets are ``Secret`` values."""

    app_secrets: tuple[Secret, ...]
    verify_token: Secret | None
    http_host: str
    http_port: int
    grpc_host: str
    grpc_port: int
    data_dir: Path
    tls_cert: Path | None
    tls_key: Path | None
    insecure_http: bool
    max_body_bytes: int
    retention: float
    log_level: str
    access_log: str
    dev_no_signature: bool
    event_loop: str = "auto"
    graph_access_token: Secret | None = None
    # The Redis URL of WAHOOK_STORE (a Secret: it may carry a password); None: SQLite.
    store_url: Secret | None = None
    redis_prefix: str = "wahook"
    redis_wait_replicas: int = 0
    graph_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v24.0"
    media_max_bytes: int = 100 * MIB
    http_max_connections: int = 0  # 0: auto (see connection_cap)
    http_idle_timeout: float = 75.0
    http_header_timeout: float = 10.0
    http_body_timeout: float = 30.0
    grpc_tokens: tuple[Secret, ...] = ()
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_client_ca: Path | None = None
    grpc_allow_unauthenticated: bool = False
    grpc_max_streams: int = 100
    grpc_stream_max_bytes: int = 4 * MIB
    allowed_phone_number_ids: frozenset[str] = frozenset()
    allowed_waba_ids: frozenset[str] = frozenset()
    dev: bool = False

    @property
    def http_scheme(self) -> str:
        return "http" if self.insecure_http else "https"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "events.sqlite3"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (pod)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_secrets(text: str | None) -> tuple[Secret, ...]:
    """Comma-separated secrets (several accepted at once while rotating)."""
    return tuple(Secret(s.strip()) for s in (text or "").split(",") if s.strip())


def _read_secret_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path!r}: {exc.strerror}") from None


def _secret_at_level(
    opt: Option, value: object | None, file_value: object | None, level: str
) -> str | None:
    """The secret given at one level (flags or environment), from its value or its file."""
    if value not in (None, "") and file_value not in (None, ""):
        src = (
            f"{opt.flag} and {opt.flag}-file"
            if level == "flags"
            else f"{opt.env} and {opt.env}_FILE"
        )
        raise ConfigError(f"both {src} are set; set only one")
    if value not in (None, ""):
        return str(value)
    if file_value not in (None, ""):
        return _read_secret_file(str(file_value), opt.env + "_FILE")
    return None


def _raw_value(
    opt: Option, flags: Mapping[str, Any], env: Mapping[str, str], dev_defaults: Mapping[str, str]
) -> tuple[str | None, str]:
    """The winning raw text of a setting and where it came from (for error messages)."""
    if opt.secret_file:
        got = _secret_at_level(opt, flags.get(opt.name), flags.get(opt.name + "_file"), "flags")
        if got is not None:
            return got, opt.flag
        got = _secret_at_level(opt, env.get(opt.env), env.get(opt.env + "_FILE"), "env")
        if got is not None:
            return got, opt.env
    else:
        flag_value = flags.get(opt.name)
        if opt.is_flag and flag_value:
            return "1", opt.flag
        if not opt.is_flag and flag_value is not None:
            return str(flag_value), opt.flag
        if env.get(opt.env) not in (None, ""):
            return env[opt.env], opt.env
    if opt.name in dev_defaults:
        return dev_defaults[opt.name], "--dev"
    return opt.default, "default"


def load(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    dev: bool = False,
    dev_defaults: Mapping[str, str] | None = None,
) -> Config:
    """Build and validate the Config. ``flags`` maps option names (and ``<secret>_file``)
    to values, None when not given; ``env`` is the process environment."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw, source = _raw_value(opt, flags, env, dev_defaults or {})
        if raw is None:
            values[opt.name] = None
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    secrets = split_secrets(values["app_secret"])
    if not secrets and not values["dev_no_signature"]:
        raise ConfigError(
            "no app secret: set WAHOOK_APP_SECRET (or WAHOOK_APP_SECRET_FILE, or --app-secret) to "
            "your Meta app's App Secret (App settings > Basic), or run `wahook serve --dev` to try "
            "it locally with a generated one"
        )
    cert, key = values["tls_cert"], values["tls_key"]
    if bool(cert) != bool(key):
        raise ConfigError("set both WAHOOK_TLS_CERT and WAHOOK_TLS_KEY (or neither)")
    if not values["insecure_http"] and not cert:
        raise ConfigError(
            "HTTPS needs a certificate: set WAHOOK_TLS_CERT and WAHOOK_TLS_KEY (PEM files), or "
            "WAHOOK_INSECURE_HTTP=1 when a TLS-terminating proxy sits in front, or use --dev"
        )
    grpc_cert, grpc_key = values["grpc_tls_cert"], values["grpc_tls_key"]
    if bool(grpc_cert) != bool(grpc_key):
        raise ConfigError("set both WAHOOK_GRPC_TLS_CERT and WAHOOK_GRPC_TLS_KEY (or neither)")
    if values["grpc_tls_client_ca"] and not grpc_cert:
        raise ConfigError(
            "WAHOOK_GRPC_TLS_CLIENT_CA needs WAHOOK_GRPC_TLS_CERT and WAHOOK_GRPC_TLS_KEY: "
            "client certificates are checked on a TLS listener"
        )
    if (
        not values["grpc_token"]
        and not values["grpc_tls_client_ca"]
        and not is_loopback(values["grpc_host"])
        and not values["grpc_allow_unauthenticated"]
    ):
        raise ConfigError(
            f"gRPC on {values['grpc_host'] or 'every address'} (not loopback) would let anyone "
            "who reaches the port read every message: set WAHOOK_GRPC_TOKEN (or _FILE) and/or "
            "WAHOOK_GRPC_TLS_CLIENT_CA, or WAHOOK_GRPC_ALLOW_UNAUTHENTICATED=1 when the network "
            "itself is trusted"
        )
    token = values["verify_token"]
    graph_token = (values["graph_access_token"] or "").strip()
    return Config(
        app_secrets=secrets,
        verify_token=Secret(token) if token else None,
        http_host=values["http_host"],
        http_port=values["http_port"],
        grpc_host=values["grpc_host"],
        grpc_port=values["grpc_port"],
        data_dir=Path(values["data_dir"]),
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        insecure_http=values["insecure_http"],
        max_body_bytes=values["max_body_bytes"],
        retention=values["retention"],
        log_level=values["log_level"],
        access_log=values["access_log"],
        event_loop=values["event_loop"],
        dev_no_signature=values["dev_no_signature"],
        graph_access_token=Secret(graph_token) if graph_token else None,
        store_url=None if values["store"] == "sqlite" else Secret(values["store"]),
        redis_prefix=values["redis_prefix"],
        redis_wait_replicas=values["redis_wait_replicas"],
        graph_base_url=values["graph_base_url"],
        graph_api_version=values["graph_api_version"],
        media_max_bytes=values["media_max_bytes"],
        http_max_connections=values["http_max_connections"],
        http_idle_timeout=values["http_idle_timeout"],
        http_header_timeout=values["http_header_timeout"],
        http_body_timeout=values["http_body_timeout"],
        grpc_tokens=split_secrets(values["grpc_token"]),
        grpc_tls_cert=Path(grpc_cert) if grpc_cert else None,
        grpc_tls_key=Path(grpc_key) if grpc_key else None,
        grpc_tls_client_ca=(
            Path(values["grpc_tls_client_ca"]) if values["grpc_tls_client_ca"] else None
        ),
        grpc_allow_unauthenticated=values["grpc_allow_unauthenticated"],
        grpc_max_streams=values["grpc_max_streams"],
        grpc_stream_max_bytes=values["grpc_stream_max_bytes"],
        allowed_phone_number_ids=values["allowed_phone_number_ids"] or frozenset(),
        allowed_waba_ids=values["allowed_waba_ids"] or frozenset(),
        dev=dev,
    )


def config_table_markdown() -> str:
    """The README's configuration table, generated from OPTIONS."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        flag = f"`{o.flag}`" + (f", `{o.flag}-file`" if o.secret_file else "")
        env = f"`{o.env}`" + (f", `{o.env}_FILE`" if o.secret_file else "")
        default = f"`{o.default}`" if o.default is not None else "—"
        rows.append(f"| {flag} | {env} | {default} | {o.help} |")
    return "\n".join(rows)
