"""Every tier's ``/openapi.json`` lists every route it serves, with the contracts' request schemas and its answers
in both codecs (JSON and msgpack), error answers included; each document is valid OpenAPI 3.1 (schemathesis
loads it) and its request schemas are valid JSON Schema. (The fuzzing of each tier on its document is in
``tests/e2e/test_openapi_fuzz.py``.)"""

from __future__ import annotations

import jsonschema
import pytest
import schemathesis
from fastapi.testclient import TestClient

from strata.edge.app import ops_app
from strata.origin.app import build_app as origin_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from strata.shared.contracts import schemas
from strata.streaming.app import build_app as streaming_app
from strata.streaming.service import IngestService
from strata.streaming.tier2.service import Tier2Service

OPS = {"/healthz", "/readyz", "/metrics"}
MEDIA = {"application/json", "application/msgpack"}


class _Ops:
    def readiness(self):
        return 200, {"ready": True}

    def exposition(self) -> bytes:
        return b""


def _docs(registry_dir) -> dict[str, dict]:
    settings = load_settings(origin={"registry": str(registry_dir)}, streaming={"registry": str(registry_dir)})
    node = OriginNode(settings)
    with TestClient(origin_app(node)) as client:          # started: the items schema names the catalog's categories
        origin = client.get("/openapi.json").json()
        categories = sorted(node.state.catalog.category_names)
    streaming = streaming_app(IngestService(settings.streaming), Tier2Service(settings)).api.openapi()
    edge = TestClient(ops_app(_Ops())).get("/openapi.json").json()
    return {"edge": edge, "streaming": streaming, "origin": origin, "_categories": categories}


@pytest.fixture(scope="module")
def docs(registry_dir) -> dict[str, dict]:
    return _docs(registry_dir)


ROUTES = {"edge": {"/v1/recommend"}, "streaming": {"/v1/events", "/v1/recommend"},
          "origin": {"/v1/recommend", "/v1/explain", "/v1/items"}}


@pytest.mark.parametrize("tier", sorted(ROUTES))
def test_every_route_is_documented_with_schemas_in_both_codecs_and_its_errors(docs, tier) -> None:
    doc = docs[tier]
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == ROUTES[tier] | OPS
    for path in ROUTES[tier]:
        post = doc["paths"][path]["post"]
        content = post["requestBody"]["content"]
        assert set(content) == MEDIA
        for media in MEDIA:
            jsonschema.Draft202012Validator.check_schema(content[media]["schema"])
            assert content[media]["schema"]["title"]
        ok = "202" if path == "/v1/events" else "200"
        assert set(post["responses"][ok]["content"]) == MEDIA
        for status in ("400", "413", "415", "422", "500"):
            assert post["responses"][status]["content"]["application/msgpack"]["schema"] == schemas.ERROR
        if path != "/v1/items":
            assert "Retry-After" in post["responses"]["503"]["headers"]
    assert doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    api = schemathesis.openapi.from_dict(doc)
    assert len([op for op in api.get_all_operations()]) == len(ROUTES[tier]) + len(OPS)


def test_the_origins_item_categories_are_its_catalogs(docs) -> None:
    schema = docs["origin"]["paths"]["/v1/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["items"]["items"]["properties"]["category"]["enum"] == docs["_categories"]


def test_the_request_schemas_are_the_contracts(docs) -> None:
    def body(tier: str, path: str) -> dict:
        return docs[tier]["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    assert body("edge", "/v1/recommend") == body("streaming", "/v1/recommend") == schemas.RECOMMEND_REQUEST
    assert body("origin", "/v1/explain") == schemas.ORIGIN_EXPLAIN_REQUEST
    assert body("streaming", "/v1/events") == schemas.events_request(1000)
