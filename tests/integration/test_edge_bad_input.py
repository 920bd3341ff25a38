"""Each bad-input class gets a 4xx whose body names the field and the reason (through the real ASGI app)."""

from __future__ import annotations

import asyncio

import httpx
import msgpack
import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings

GOOD = {"user_id": "u1", "session_id": "s1", "slot": "home", "k": 5}


@pytest.fixture(scope="module", params=["asgi", "strata", "uvicorn"])
def app(request, registry_dir, serve_edge):
    """The ASGI app in-process, and over a real socket both servers ``strata edge --http`` offers: the
    edge's own and uvicorn (same answers)."""
    if request.param == "asgi":
        svc = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"},
                                              "max_body_bytes": 65536}))
        svc.load_model()
        yield svc.asgi_app()
        return
    with serve_edge(registry_dir, max_body_bytes=65536, http=request.param) as (port, _):
        yield f"http://127.0.0.1:{port}"


def post(app, content: bytes, ctype: str | None = "application/json", method: str = "POST",
         accept: str | None = None) -> httpx.Response:
    headers = {}
    if ctype:
        headers["content-type"] = ctype
    if accept:
        headers["accept"] = accept

    if isinstance(app, str):
        with httpx.Client(base_url=app) as c:
            return c.request(method, "/v1/recommend", content=content, headers=headers)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as c:
            return await c.request(method, "/v1/recommend", content=content, headers=headers)

    return asyncio.run(go())


def error_of(resp: httpx.Response) -> dict:
    return resp.json()["error"]


def test_good_request_json_and_msgpack(app):
    r = post(app, orjson.dumps(GOOD))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert len(r.json()["items"]) == 5
    r = post(app, msgpack.packb(GOOD), "application/msgpack")
    assert r.status_code == 200 and r.headers["content-type"] == "application/msgpack"
    assert len(msgpack.unpackb(r.content)["items"]) == 5
    r = post(app, orjson.dumps(GOOD), accept="application/msgpack")
    assert msgpack.unpackb(r.content)["tier"] == "edge"


def test_malformed_json_is_400(app):
    r = post(app, b'{"user_id": "u1",')
    assert r.status_code == 400
    assert error_of(r)["field"] == "body" and "not valid JSON" in error_of(r)["reason"]


def test_malformed_msgpack_is_400(app):
    r = post(app, b"\xc1\xc1\xc1", "application/msgpack")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/msgpack"     # errors answer in the caller's codec
    err = msgpack.unpackb(r.content)["error"]
    assert err["field"] == "body" and "not valid msgpack" in err["reason"]


def test_body_not_an_object_is_400(app):
    r = post(app, b"[1, 2]")
    assert r.status_code == 400 and "must be an object" in error_of(r)["reason"]


@pytest.mark.parametrize(("patch", "field", "reason"), [
    ({"user_id": 7}, "user_id", "must be a string"),
    ({"session_id": None}, "session_id", "is required"),
    ({"k": "10"}, "k", "must be an integer"),
    ({"k": 0}, "k", "between 1 and 100"),
    ({"k": 101}, "k", "between 1 and 100"),
    ({"candidates": "SKU-1"}, "candidates", "must be a list"),
    ({"candidates": ["SKU-1", 5]}, "candidates[1]", "non-empty string"),
    ({"context": {"hour": 25}}, "context.hour", "0..23"),
    ({"context": {"channel": "fax"}}, "context.channel", "must be one of"),
    ({"explain": "yes"}, "explain", "must be a boolean"),
    ({"surprise": 1}, "body", "unknown field"),
])
def test_wrong_types_and_ranges_are_422(app, patch, field, reason):
    r = post(app, orjson.dumps({**GOOD, **patch}))
    assert r.status_code == 422
    err = error_of(r)
    assert err["field"] == field and reason in err["reason"], err


def test_more_than_1000_candidates_is_422(app):
    r = post(app, orjson.dumps({**GOOD, "candidates": [f"SKU-{i}" for i in range(1001)]}))
    assert r.status_code == 422
    assert error_of(r) == {"code": "invalid_field", "field": "candidates", "reason": "at most 1000 items, got 1001"}


def test_body_too_large_is_413(app):
    r = post(app, orjson.dumps({**GOOD, "user_id": "x" * 70000}))
    assert r.status_code == 413
    assert error_of(r)["field"] == "body" and "exceeds the 65536-byte limit" in error_of(r)["reason"]


def test_unsupported_content_type_is_415(app):
    r = post(app, b"user_id=u1", "application/x-www-form-urlencoded")
    assert r.status_code == 415
    err = error_of(r)
    assert err["field"] == "Content-Type" and "application/x-www-form-urlencoded" in err["reason"]


def test_wrong_method_is_405(app):
    r = post(app, b"", method="GET")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
