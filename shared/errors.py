"""One error root for the project. Callers branch on ``retriable``; ``shared.serving.error_mapper`` is the only
place that turns an error into an HTTP answer (status, headers, body).

``status`` is the HTTP status a front door answers with; ``retry_after_s`` (when set) becomes the
``Retry-After`` header. Client mistakes are 4xx and not retriable; a dependency that is down with no
fallback is 503, retriable, with ``Retry-After``.
"""

from __future__ import annotations

import sys


class StrataError(Exception):
    """Base error. ``status`` is the HTTP status a front door should answer with."""

    status: int = 500
    code: str = "internal"
    retriable: bool = False
    retry_after_s: float | None = None

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field

    def to_dict(self) -> dict:
        """The documented error body: ``{"error": {"code", "field", "reason"}}`` (field may be null)."""
        return {"error": {"code": self.code, "reason": self.reason, "field": self.field}}


def describe(exc: BaseException) -> str:
    """``Type: message`` for a log line or an error reason, without repeating the type when the message
    already starts with it (aiokafka's errors do) and with the type alone when the message is empty."""
    name, msg = type(exc).__name__, str(exc)
    if not msg:
        return name
    return msg if msg.startswith(name) else f"{name}: {msg}"


class MalformedBody(StrataError):
    status, code = 400, "malformed_body"


class MalformedHttp(StrataError):
    """The bytes are not a valid HTTP/1.x request; the connection is closed after the answer."""

    status, code = 400, "malformed_http"


class InvalidField(StrataError):
    """A field has the wrong type or an out-of-range value."""

    status, code = 422, "invalid_field"


class NotFound(StrataError):
    status, code = 404, "not_found"


class MethodNotAllowed(StrataError):
    status, code = 405, "method_not_allowed"

    def __init__(self, reason: str, *, field: str | None = "method", allow: str = "POST") -> None:
        super().__init__(reason, field=field)
        self.allow = allow


class Unauthorized(StrataError):
    """No key, or a key that is unknown or revoked: 401 with ``WWW-Authenticate: Bearer``."""

    status, code = 401, "unauthorized"


class Forbidden(StrataError):
    """A valid key that may not do this: a scope it lacks, or a body naming another tenant."""

    status, code = 403, "forbidden"


class TooManyRequests(StrataError):
    """A rate limit: 429 with ``Retry-After`` (when the bucket has a token again)."""

    status, code, retriable = 429, "rate_limited", True

    def __init__(self, reason: str, *, field: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(reason, field=field)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(StrataError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(StrataError):
    status, code = 415, "unsupported_media_type"


class HeadersTooLarge(StrataError):
    status, code = 431, "headers_too_large"


class RequestTimeout(StrataError):
    """The request line, headers or body did not arrive within the server's deadline."""

    status, code = 408, "request_timeout"


class HttpVersionNotSupported(StrataError):
    status, code = 505, "http_version_not_supported"


class ServiceUnavailable(StrataError):
    """A dependency is down and there is no fallback: 503 with ``Retry-After``; try again later."""

    status, code, retriable = 503, "unavailable", True
    retry_after_s = 1.0


class NotReady(ServiceUnavailable):
    """No model is loaded yet (the process is starting or every bundle was refused)."""

    code = "not_ready"


class TooManyConnections(ServiceUnavailable):
    """The server holds as many connections as it may; this one is refused at once, never left waiting."""

    code = "too_many_connections"


class StoreUnavailable(ServiceUnavailable):
    """The online store did not answer in time; the edge falls back to caches and priors instead."""

    code = "store_unavailable"


class InternalError(StrataError):
    """An unexpected failure; the answer carries a request id that the logged traceback also carries."""

    status, code = 500, "internal"


class BundleError(StrataError):
    """A model bundle is missing, corrupt or fails its checksums; the old model stays live."""

    code = "bad_bundle"


class ParityError(BundleError):
    """ONNX outputs differ from the source model beyond tolerance; the bundle is not written."""

    code = "parity_failed"


class ConfigError(StrataError):
    code = "bad_config"


# Redis/Valkey error replies that say "not now" rather than "never" (the server is loading, out of memory,
# busy with a script, a replica or a cluster in transition): retrying the same command can succeed.
_RETRIABLE_REPLIES = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS",
                      "MOVED", "ASK")


def is_retriable(exc: BaseException) -> bool:
    """Whether doing the same thing again may succeed: the project's errors say so (``retriable``); library
    errors are mapped here, so callers branch on one flag. Transport failures (connection refused or reset,
    timeouts, a broker or store restarting) are retriable; an error reply about the data itself (Redis
    ``WRONGTYPE``, an overflowing ``HINCRBY``, a failing script, Kafka ``MessageSizeTooLarge``) is not, and
    neither is any other exception (a bug or bad input does not fix itself)."""
    if isinstance(exc, StrataError):
        return exc.retriable
    if isinstance(exc, (TimeoutError, ConnectionError)):      # builtins (asyncio.TimeoutError is TimeoutError)
        return True
    if isinstance(exc, OSError):
        return True
    redis_exc = sys.modules.get("redis.exceptions")
    if redis_exc is not None and isinstance(exc, redis_exc.RedisError):
        if isinstance(exc, (redis_exc.ConnectionError, redis_exc.TimeoutError, redis_exc.BusyLoadingError,
                            redis_exc.ReadOnlyError, redis_exc.TryAgainError, redis_exc.ClusterDownError,
                            redis_exc.MasterDownError, redis_exc.OutOfMemoryError, redis_exc.MovedError,
                            redis_exc.AskError, redis_exc.NoScriptError)):
            return True
        if isinstance(exc, redis_exc.ResponseError):
            return str(exc).split(" ", 1)[0].upper() in _RETRIABLE_REPLIES
        return False
    kafka_exc = sys.modules.get("aiokafka.errors")
    if kafka_exc is not None and isinstance(exc, kafka_exc.KafkaError):
        if type(exc) is kafka_exc.KafkaError or isinstance(exc, kafka_exc.KafkaTimeoutError):
            return True                  # bare KafkaError: a failed or cancelled send, not the record's fault
        return bool(exc.retriable)
    return False
