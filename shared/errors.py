"""One error root for the project. Callers branch on ``retriable``; HTTP mapping lives in ``http_status``."""

from __future__ import annotations


class StrataError(Exception):
    """Base error. ``status`` is the HTTP status a front door should answer with."""

    status: int = 500
    code: str = "internal"
    retriable: bool = False

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field

    def to_dict(self) -> dict:
        err: dict = {"code": self.code, "reason": self.reason}
        if self.field is not None:
            err["field"] = self.field
        return {"error": err}


class MalformedBody(StrataError):
    status, code = 400, "malformed_body"


class InvalidField(StrataError):
    """A field has the wrong type or an out-of-range value."""

    status, code = 422, "invalid_field"


class PayloadTooLarge(StrataError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(StrataError):
    status, code = 415, "unsupported_media_type"


class NotFound(StrataError):
    status, code = 404, "not_found"


class MethodNotAllowed(StrataError):
    status, code = 405, "method_not_allowed"


class StoreUnavailable(StrataError):
    """The online store did not answer in time; callers fall back to caches and priors."""

    status, code, retriable = 503, "store_unavailable", True


class BundleError(StrataError):
    """A model bundle is missing, corrupt or fails its checksums; the old model stays live."""

    code = "bad_bundle"


class ParityError(BundleError):
    """ONNX outputs differ from the source model beyond tolerance; the bundle is not written."""

    code = "parity_failed"


class ConfigError(StrataError):
    code = "bad_config"
