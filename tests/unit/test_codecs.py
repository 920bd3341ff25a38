"""JSON and msgpack bodies: round trips, media types, content negotiation and malformed input."""

from __future__ import annotations

import msgpack
import numpy as np
import orjson
import pytest

from strata.shared.errors import MalformedBody, UnsupportedMediaType
from strata.shared.serving.codecs import JSON, MSGPACK, choose_response_type, decode, encode, media_type

BODY = {
    "user_id": "u-1", "session_id": "s-1", "k": 5, "candidates": ["SKU-1", "SKU-2"],
    "context": {"channel": "app", "hour": 7}, "explain": False, "ratio": 0.25, "none": None,
}


@pytest.mark.parametrize("media", [JSON, MSGPACK])
def test_round_trip(media: str) -> None:
    raw = encode(BODY, media)
    assert isinstance(raw, bytes)
    assert decode(raw, media) == BODY


def test_encodings_are_the_expected_wire_formats() -> None:
    assert orjson.loads(encode(BODY, JSON)) == BODY
    assert msgpack.unpackb(encode(BODY, MSGPACK), raw=False) == BODY
    assert encode({"a": 1}, JSON) == b'{"a":1}'
    assert encode({"a": 1}, MSGPACK) == b"\x81\xa1a\x01"


def test_unknown_media_falls_back_to_json_on_encode() -> None:
    assert encode({"a": 1}, "text/plain") == b'{"a":1}'


@pytest.mark.parametrize(("header", "expected"), [
    ("application/json", "application/json"),
    ("application/json; charset=utf-8", "application/json"),
    ("  Application/JSON ;charset=UTF-8", "application/json"),
    (b"application/msgpack", "application/msgpack"),
    (b"APPLICATION/X-MSGPACK; foo=bar", "application/x-msgpack"),
    ("", ""),
    (None, ""),
    (b"", ""),
])
def test_media_type(header: str | bytes | None, expected: str) -> None:
    assert media_type(header) == expected


@pytest.mark.parametrize("ctype", [
    "application/json", "text/json", "application/json; charset=utf-8", b"Application/Json", None, "",
])
def test_json_content_types_decode(ctype: str | bytes | None) -> None:
    assert decode(b'{"k": 3}', ctype) == {"k": 3}


@pytest.mark.parametrize("ctype", [
    "application/msgpack", "application/x-msgpack", "application/vnd.msgpack", b"application/MSGPACK; v=1",
])
def test_msgpack_content_types_decode(ctype: str | bytes) -> None:
    assert decode(msgpack.packb({"k": 3}), ctype) == {"k": 3}


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_unsupported_content_type_is_415_naming_content_type(ctype: str) -> None:
    with pytest.raises(UnsupportedMediaType) as ei:
        decode(b"k=3", ctype)
    err = ei.value
    assert err.status == 415
    assert err.field == "Content-Type"
    assert f"Content-Type '{ctype}' is not supported" in err.reason
    assert "application/json" in err.reason and "application/msgpack" in err.reason
    assert err.to_dict() == {"error": {"code": "unsupported_media_type", "reason": err.reason,
                                       "field": "Content-Type"}}


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"a": 1', b"\xff\xfe", b'{"a": 1} trailing'])
def test_malformed_json_is_400_on_body(body: bytes) -> None:
    with pytest.raises(MalformedBody) as ei:
        decode(body, JSON)
    assert ei.value.status == 400
    assert ei.value.field == "body"
    assert ei.value.reason.startswith("body is not valid JSON: ")
    assert ei.value.to_dict()["error"]["code"] == "malformed_body"


def test_missing_content_type_with_bad_json_is_400() -> None:
    with pytest.raises(MalformedBody, match="body is not valid JSON"):
        decode(b"user_id=1", None)


@pytest.mark.parametrize("body", [
    b"",                                  # no data
    b"\x92\x01",                          # array of 2 with one element
    msgpack.packb({"a": 1}) + b"\x01",    # trailing data
    b"\xc1",                              # reserved byte
    msgpack.packb({1: "x"}),              # non-string map key
])
def test_malformed_msgpack_is_400_on_body(body: bytes) -> None:
    with pytest.raises(MalformedBody) as ei:
        decode(body, MSGPACK)
    assert ei.value.status == 400
    assert ei.value.field == "body"
    assert ei.value.reason.startswith("body is not valid msgpack: ")


@pytest.mark.parametrize(("accept", "request_type", "expected"), [
    ("application/msgpack", JSON, MSGPACK),
    ("application/x-msgpack", None, MSGPACK),
    (b"application/MSGPACK", JSON, MSGPACK),
    ("application/json", MSGPACK, JSON),
    (b"application/json", MSGPACK, JSON),
    ("*/*", MSGPACK, MSGPACK),          # no preference: mirror a msgpack request
    ("*/*", JSON, JSON),
    (None, "application/x-msgpack; q=1", MSGPACK),
    ("", MSGPACK, MSGPACK),
    (None, None, JSON),
    ("text/html", None, JSON),
    (None, "text/plain", JSON),
])
def test_choose_response_type(accept: str | bytes | None, request_type: str | None, expected: str) -> None:
    assert choose_response_type(accept, request_type) == expected


def test_numpy_values_encode_in_json() -> None:
    obj = {"scores": np.array([0.5, 0.25], dtype=np.float32), "n": np.int64(3), "x": np.float64(1.5),
           "ok": np.bool_(True)}
    assert orjson.loads(encode(obj, JSON)) == {"scores": [0.5, 0.25], "n": 3, "x": 1.5, "ok": True}


def test_json_decode_keeps_types() -> None:
    out = decode(b'{"k": 10, "p": 0.5, "e": true, "c": ["a"], "n": null}', JSON)
    assert out == {"k": 10, "p": 0.5, "e": True, "c": ["a"], "n": None}
    assert type(out["k"]) is int and type(out["e"]) is bool
