"""shared.serving.error_mapper: the one place errors become answers (status, headers, body) in the caller's codec."""

from __future__ import annotations

import logging

import msgpack
import orjson
import pytest

from strata.shared.errors import (
    InvalidField,
    MethodNotAllowed,
    NotReady,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreUnavailable,
)
from strata.shared.serving.codecs import JSON, MSGPACK
from strata.shared.serving.error_mapper import error_reply, negotiated_error_reply


def test_client_error_shape_and_not_retriable() -> None:
    r = error_reply(InvalidField("must be between 1 and 100, got 0", field="k"))
    assert r.status == 422 and r.media == JSON and r.headers == ()
    assert orjson.loads(r.body) == {"error": {"code": "invalid_field", "field": "k",
                                              "reason": "must be between 1 and 100, got 0"}, "retriable": False}


def test_field_is_always_present() -> None:
    body = orjson.loads(error_reply(PayloadTooLarge("too big")).body)
    assert body["error"]["field"] is None


def test_msgpack_codec() -> None:
    r = error_reply(InvalidField("bad", field="k"), MSGPACK)
    assert r.media == MSGPACK and msgpack.unpackb(r.body)["error"]["field"] == "k"


@pytest.mark.parametrize("exc", [NotReady("no model loaded yet"), StoreUnavailable("down"),
                                 ServiceUnavailable("broker down")])
def test_503_is_retriable_with_retry_after(exc) -> None:
    r = error_reply(exc)
    assert r.status == 503
    headers = dict(r.headers)
    assert headers[b"retry-after"] == b"1"
    body = orjson.loads(r.body)
    assert body["retriable"] is True and body["error"]["code"] == exc.code
    assert body["request_id"] == headers[b"x-request-id"].decode()


def test_retry_after_rounds_up() -> None:
    exc = ServiceUnavailable("later")
    exc.retry_after_s = 2.2
    assert dict(error_reply(exc).headers)[b"retry-after"] == b"3"


def test_405_names_the_allowed_method() -> None:
    r = error_reply(MethodNotAllowed("GET not allowed; use POST"))
    assert r.status == 405 and dict(r.headers)[b"allow"] == b"POST"
    assert orjson.loads(r.body)["error"]["field"] == "method"


def test_unexpected_exception_is_a_500_with_a_request_id_and_a_logged_traceback(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="strata.shared.serving.error_mapper")
    try:
        raise KeyError("surprise")
    except KeyError as exc:
        r = error_reply(exc)
    assert r.status == 500
    body = orjson.loads(r.body)
    rid = body["request_id"]
    assert body["error"]["code"] == "internal" and rid in body["error"]["reason"]
    assert body["retriable"] is False
    assert dict(r.headers)[b"x-request-id"] == rid.encode()
    record = next(rec for rec in caplog.records if rec.name == "strata.shared.serving.error_mapper")
    assert record.request_id == rid and record.exc_info is not None
    assert "KeyError: 'surprise'" in caplog.text


def test_a_given_request_id_is_used() -> None:
    r = error_reply(RuntimeError("x"), request_id="abc123")
    assert orjson.loads(r.body)["request_id"] == "abc123"


@pytest.mark.parametrize(("accept", "ctype", "media"), [
    (b"application/msgpack", b"application/json", MSGPACK),
    (None, b"application/msgpack", MSGPACK),
    (None, None, JSON),
    (b"\xff\xfe", None, JSON),
])
def test_negotiated_codec(accept, ctype, media) -> None:
    assert negotiated_error_reply(InvalidField("x", field="k"), accept, ctype).media == media
