"""wahook's exceptions: one base, a few subclasses, translated at one seam.

    WahookError                    base; carries the HTTP status and gRPC code it maps to
    ├── SignatureError             401  X-Hub-Signature-256 missing, malformed or wrong
    ├── VerificationError          403  GET /webhook challenge with a wrong mode or token
    ├── PayloadError               400  body is not JSON, or not a JSON object
    ├── PayloadTooLargeError       413  body over the configured cap
    ├── LogUnavailableError        503  the event log cannot take the write (Meta retries)
    ├── InvalidArgumentError       400  / INVALID_ARGUMENT  a request field is wrong (names it)
    ├── NotFoundError              404  / NOT_FOUND
    ├── FailedPreconditionError    409  / FAILED_PRECONDITION
    ├── UpstreamError                   the Graph API refused or failed a media download:
    │   ├── UpstreamDeniedError         PERMISSION_DENIED   Meta refused the access token
    │   ├── UpstreamRateLimitedError    RESOURCE_EXHAUSTED  Meta rate-limits the calls
    │   ├── UpstreamUnavailableError    UNAVAILABLE         5xx, unreachable, timed out
    │   └── DataLossError               DATA_LOSS           bytes do not match Meta's sha256/size
    └── ConfigError                     the sidecar cannot start as configured (says why)

The HTTP handler and the gRPC servicer are the only places that turn these into
responses; no library exception (sqlite3, json, ssl) leaks past them. The gRPC
code is a name of ``grpc.StatusCode`` so this module imports no I/O library.
"""

from __future__ import annotations


class WahookError(Exception):
    """Base of every error wahook raises on purpose."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignatureError(WahookError):
    """The X-Hub-Signature-256 header is missing, malformed, or matches no app secret."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class VerificationError(WahookError):
    """The webhook verification request has the wrong hub.mode or hub.verify_token."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class PayloadError(WahookError):
    """The webhook body is not JSON, or its top level is not a JSON object."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class PayloadTooLargeError(WahookError):
    """The webhook body is larger than the configured cap."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UriTooLongError(WahookError):
    """The request target (path and query) is longer than the front reads."""

    http_status = 414
    grpc_code = "INVALID_ARGUMENT"


class LogUnavailableError(WahookError):
    """The event log cannot make the write durable right now."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class InvalidArgumentError(WahookError):
    """A request field is invalid; the message names the field."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFoundError(WahookError):
    """The thing asked for does not exist."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class FailedPreconditionError(WahookError):
    """The request conflicts with existing state (e.g. a group's filter)."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class UpstreamError(WahookError):
    """The Graph API refused or failed a request in a way no subclass names; the message
    quotes Meta's (never the access token)."""

    http_status = 502
    grpc_code = "UNKNOWN"


class UpstreamDeniedError(UpstreamError):
    """Meta refused the sidecar's access token (expired, revoked, missing a permission)."""

    grpc_code = "PERMISSION_DENIED"


class UpstreamRateLimitedError(UpstreamError):
    """Meta rate-limits the calls; retry later."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class UpstreamUnavailableError(UpstreamError):
    """The Graph API answered 5xx, could not be reached, or timed out; retry later."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class DataLossError(UpstreamError):
    """Downloaded bytes do not match the SHA-256 or size Meta gave: discard them."""

    grpc_code = "DATA_LOSS"


class ConfigError(WahookError):
    """The sidecar cannot start as configured; the message says what to set."""

    http_status = 500
    grpc_code = "FAILED_PRECONDITION"
