"""The PoP response caches: a repeated body is answered by the exact-body cache (it used to stay empty:
``if self.exact`` was false for an empty cache, so nothing was ever put in it)."""

from __future__ import annotations

import asyncio

import orjson

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings

JSON = b"application/json"


def test_a_repeated_body_is_answered_by_the_exact_cache(registry_dir) -> None:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    node.load_model()
    body = orjson.dumps({"user_id": "u", "session_id": "s", "k": 4})
    first = orjson.loads(asyncio.run(node.handle_recommend(body, JSON, None))[2])
    second = orjson.loads(asyncio.run(node.handle_recommend(body, JSON, None))[2])
    assert first["timing"]["cache"] == "miss" and second["timing"]["cache"] == "hit"
    assert node.responses.exact.hits == 1 and node.responses.semantic.hits == 0
    assert second["items"] == first["items"] and second["request_id"] != first["request_id"]
    # same request, other bytes (key order): the semantic cache answers and teaches the exact one
    other = orjson.dumps({"k": 4, "session_id": "s", "user_id": "u"})
    third = orjson.loads(asyncio.run(node.handle_recommend(other, JSON, None))[2])
    assert third["timing"]["cache"] == "hit" and node.responses.semantic.hits == 1
    asyncio.run(node.handle_recommend(other, JSON, None))
    assert node.responses.exact.hits == 2


def test_age_gate_is_part_of_the_cache_key(registry_dir) -> None:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}))
    node.load_model()
    base = {"user_id": "u", "session_id": "s", "k": 4}
    asyncio.run(node.handle_recommend(orjson.dumps(base), JSON, None))
    verified = {**base, "context": {"age_verified": True}}
    out = orjson.loads(asyncio.run(node.handle_recommend(orjson.dumps(verified), JSON, None))[2])
    assert out["timing"]["cache"] == "miss"
