"""``strata edge`` as a real process: the HTTP contract in JSON and msgpack, ops routes, bad input, CLI errors."""

from __future__ import annotations

import math
import subprocess

import httpx
import msgpack
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from strata.deploy.local import strata_command
from strata.shared.models.bundle import ITEMS_FILE

REQUIRED_FIELDS = {"items", "tier", "confidence", "degraded", "route_reasons", "model_version", "request_id",
                   "impression_id", "timing", "unknown_candidates"}
JSON = "application/json"
MSGPACK = "application/msgpack"


@pytest.fixture(scope="module")
def catalog(edge_node) -> dict[str, list]:
    version_dir = edge_node.registry / "edge-scorer" / edge_node.version
    return pq.read_table(version_dir / ITEMS_FILE, columns=["item_id", "category", "age_restricted"]).to_pydict()


@pytest.fixture(scope="module")
def item_ids(catalog) -> list[str]:
    return [str(x) for x in catalog["item_id"]]


@pytest.fixture(scope="module")
def http(edge_node):
    with httpx.Client(base_url=edge_node.url, timeout=10.0) as client:
        yield client


def _candidates(catalog: dict[str, list], n: int, seed: int) -> list[str]:
    """n random items the guardrails leave alone for an anonymous user: none age-restricted, categories
    spread evenly (so that only the given candidates can come back; see test_edge_guardrails for the rest)."""
    allowed = [i for i, age in enumerate(catalog["age_restricted"]) if not age]
    n_cats = len({catalog["category"][i] for i in allowed})
    per_cat = -(-n // n_cats)
    taken: dict[str, int] = {}
    picks = []
    for i in np.random.default_rng(seed).permutation(allowed).tolist():
        cat = catalog["category"][i]
        if taken.get(cat, 0) < per_cat:
            taken[cat] = taken.get(cat, 0) + 1
            picks.append(str(catalog["item_id"][i]))
            if len(picks) == n:
                return picks
    raise AssertionError(f"catalog cannot give {n} spread candidates")


def _body(session: str, k: int, candidates: list[str] | None, channel: str = "web") -> dict:
    body = {"tenant": "default", "user_id": f"u-{session}", "session_id": session, "slot": "home", "k": k,
            "context": {"channel": channel, "device": "mobile", "country": "DE", "hour": 9}}
    if candidates is not None:
        body["candidates"] = candidates
    return body


def _media(resp: httpx.Response) -> str:
    return resp.headers["content-type"].split(";")[0].strip()


def _assert_contract(data: dict, *, k: int, allowed: set[str], version: str, unknown: int = 0) -> None:
    assert set(data) >= REQUIRED_FIELDS, f"missing {REQUIRED_FIELDS - set(data)}"
    items = data["items"]
    assert len(items) == k
    ids = [it["item_id"] for it in items]
    assert len(set(ids)) == k, "an item was returned twice"
    assert set(ids) <= allowed
    for it in items:
        assert isinstance(it["item_id"], str)
        assert isinstance(it["score"], float) and math.isfinite(it["score"])
        assert isinstance(it["explored"], bool)
    assert data["tier"] == "edge"
    assert isinstance(data["confidence"], float) and 0.0 <= data["confidence"] <= 1.0
    assert data["degraded"] is False  # Valkey is up
    assert isinstance(data["route_reasons"], list) and all(isinstance(r, str) for r in data["route_reasons"])
    assert data["model_version"] == version
    assert isinstance(data["request_id"], str) and data["request_id"]
    assert isinstance(data["impression_id"], str) and data["impression_id"]
    assert data["request_id"] != data["impression_id"]
    assert data["unknown_candidates"] == unknown
    assert isinstance(data["timing"]["server_us"], int) and data["timing"]["server_us"] >= 0


def test_ops_routes_report_ready_with_the_live_model(http, edge_node) -> None:
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == edge_node.version
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in metrics.text


def test_json_request_with_candidates(http, edge_node, catalog) -> None:
    cands = _candidates(catalog, 50, seed=1)
    resp = http.post("/v1/recommend", content=orjson.dumps(_body("e2e-json", 5, cands)),
                     headers={"Content-Type": JSON})
    assert resp.status_code == 200, resp.text
    assert _media(resp) == JSON
    _assert_contract(resp.json(), k=5, allowed=set(cands), version=edge_node.version)


def test_msgpack_request_and_response(http, edge_node, catalog) -> None:
    cands = _candidates(catalog, 80, seed=2)
    resp = http.post("/v1/recommend", content=msgpack.packb(_body("e2e-msgpack", 7, cands, "app")),
                     headers={"Content-Type": MSGPACK, "Accept": MSGPACK})
    assert resp.status_code == 200, resp.content[:200]
    assert _media(resp) == MSGPACK
    data = msgpack.unpackb(resp.content, raw=False)
    _assert_contract(data, k=7, allowed=set(cands), version=edge_node.version)


def test_json_in_msgpack_out_follows_accept(http, edge_node, catalog) -> None:
    cands = _candidates(catalog, 20, seed=3)
    resp = http.post("/v1/recommend", content=orjson.dumps(_body("e2e-accept", 3, cands, "email")),
                     headers={"Content-Type": JSON, "Accept": MSGPACK})
    assert resp.status_code == 200
    assert _media(resp) == MSGPACK
    _assert_contract(msgpack.unpackb(resp.content, raw=False), k=3, allowed=set(cands), version=edge_node.version)


def test_pool_answers_when_no_candidates_are_given(http, edge_node, item_ids) -> None:
    resp = http.post("/v1/recommend", content=msgpack.packb(_body("e2e-pool", 10, None, "sms")),
                     headers={"Content-Type": MSGPACK})
    assert resp.status_code == 200
    assert _media(resp) == MSGPACK  # a msgpack request without Accept gets msgpack back
    _assert_contract(msgpack.unpackb(resp.content, raw=False), k=10, allowed=set(item_ids),
                     version=edge_node.version)


def test_unknown_candidates_are_counted_not_refused(http, edge_node, catalog) -> None:
    unknown = ["missing-a", "missing-b", "missing-c"]
    cands = _candidates(catalog, 20, seed=4) + unknown
    resp = http.post("/v1/recommend", json=_body("e2e-unknown", 23, cands, "pos"))
    assert resp.status_code == 200
    _assert_contract(resp.json(), k=23, allowed=set(cands), version=edge_node.version, unknown=3)


@pytest.mark.parametrize(("content", "ctype", "status", "code", "field"), [
    (b'{"user_id": "u", "session_id": ', JSON, 400, "malformed_body", "body"),
    (b"user_id=u", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "Content-Type"),
    (orjson.dumps({"user_id": "u", "session_id": "s", "k": 0}), JSON, 422, "invalid_field", "k"),
    (orjson.dumps({"user_id": "u", "session_id": "s", "candidates": ["x"] * 1001}), JSON, 422, "invalid_field",
     "candidates"),
    (orjson.dumps({"user_id": "u", "session_id": "s", "pad": "x" * 70_000}), JSON, 413, "payload_too_large",
     "body"),
])
def test_bad_input_gets_a_4xx_naming_field_and_reason(http, content, ctype, status, code, field) -> None:
    resp = http.post("/v1/recommend", content=content, headers={"Content-Type": ctype})
    assert resp.status_code == status
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["field"] == field
    assert isinstance(err["reason"], str) and err["reason"]


def test_cli_rejects_bad_config_with_one_line_and_exit_2() -> None:
    proc = subprocess.run([*strata_command(), "edge", "--port", "70000", "--store", "none"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("strata edge: bad config:")
    assert "edge.port" in lines[0]


def test_cli_reports_a_registry_without_a_model(tmp_path) -> None:
    proc = subprocess.run([*strata_command(), "edge", "--registry", str(tmp_path), "--store", "none",
                           "--log-level", "ERROR"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "strata edge: error:" in proc.stderr
    assert "CURRENT" in proc.stderr
