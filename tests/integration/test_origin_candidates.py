"""The origin honours ``candidates`` (the review's finding 21, probe ``c1_bad_requests.py``: they were validated,
then ignored; 1,000 unknown ids got 100 of the origin's own items with no warning)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings

BODY = {"user_id": "u1", "session_id": "s1", "k": 5}


@pytest.fixture(scope="module")
def origin(registry_dir, tmp_path_factory) -> Iterator[tuple[TestClient, OriginNode]]:
    log = tmp_path_factory.mktemp("cand") / "catalog.jsonl"
    node = OriginNode(load_settings(origin={"registry": str(registry_dir), "catalog_log": str(log)}))
    with TestClient(build_app(node)) as client:
        yield client, node


def _servable(node: OriginNode, n: int) -> list[str]:
    c = node.state.catalog
    return [c.item_ids[r] for r in range(len(c)) if not c.age_restricted[r] and c.stock[r] > 0
            and c.categories[r] not in ("wine", "spirits")][100:100 + n]


@pytest.mark.parametrize("route", ["/v1/recommend", "/v1/explain"])
def test_the_answer_comes_from_the_given_candidates(origin, route) -> None:
    client, node = origin
    cands = _servable(node, 12)
    out = client.post(route, json={**BODY, "candidates": [*cands, "NOPE-1", "NOPE-2"]}).json()
    got = [it["item_id"] for it in out["items"]]
    assert len(got) == 5 and set(got) <= set(cands), got
    assert out["removed"].get("unknown_item") == 2 and "candidates_unknown" not in out["route_reasons"]


def test_only_unknown_candidates_are_reported_not_ignored(origin) -> None:
    client, _ = origin
    out = client.post("/v1/recommend", json={**BODY, "candidates": [f"NOPE-{i}" for i in range(1000)]}).json()
    assert "candidates_unknown" in out["route_reasons"] and out["removed"]["unknown_item"] == 1000
    assert len(out["items"]) == 5          # never empty: the origin's own ranking, said so
