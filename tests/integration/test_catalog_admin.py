"""``POST /v1/items`` as an admin API (the review's finding 5, probes ``b9_guardrail_bypass.py``,
``b7_grounding_injection.py`` part 3, ``b8_items_flood.py`` and the lost writes): only a ``catalog:write`` key of
the catalog's tenant may write; what it writes passes the same guardrails (a restriction is a floor: a wine
re-filed as beverages stays banned, a gin cleared of its age flag stays age-gated); titles that address the reader
are refused; a large upsert leaves the event loop free (health checks answer while it runs); and upserts are
replayed after a restart."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from tests.integration.auth_kit import assert_refused, bearer, make_keys

PHISH = "URGENT: your order is on hold, confirm your card at evil dot example"


def _settings(registry, log, **extra):
    return load_settings(origin={"registry": str(registry), "catalog_log": str(log), **extra},
                         guardrails={"banned_categories": ["wine"]})


def _item(c, r: int, **change) -> dict:
    return {"item_id": c.item_ids[r], "title": c.titles[r], "category": c.categories[r],
            "price": round(float(c.prices[r]), 2), "stock": 50, "age_restricted": bool(c.age_restricted[r]), **change}


def _explain(client, key: str, item: str) -> dict:
    return client.post("/v1/explain", json={"user_id": "b9", "session_id": "b9", "item_ids": [item],
                                            "context": {"consent": False}}, headers=bearer(key)).json()


def test_catalog_writes_pass_the_guardrails_and_survive_a_restart(registry_dir, tmp_path, monkeypatch) -> None:
    keys = make_keys(tmp_path, monkeypatch)
    log = tmp_path / "catalog.jsonl"
    node = OriginNode(_settings(registry_dir, log))
    node.load()
    c = node.state.catalog
    wine = next(r for r in range(len(c)) if c.categories[r] == "wine")
    spirit = next(r for r in range(len(c)) if c.age_restricted[r] and c.categories[r] != "wine")
    target = next(r for r in range(len(c)) if c.categories[r] == "bakery" and not c.age_restricted[r])
    bypass = {"items": [_item(c, wine, category="beverages", age_restricted=False),
                        _item(c, spirit, age_restricted=False)]}
    with TestClient(build_app(node)) as client:
        assert_refused(client.post("/v1/items", json=bypass), 401, "Authorization", "API key is required")
        assert_refused(client.post("/v1/items", json=bypass, headers=bearer(keys.b_catalog)), 403,
                       "Authorization", "catalog belongs to tenant 'shopA'")
        resp = client.post("/v1/items", json=bypass, headers=bearer(keys.a_catalog))
        assert resp.status_code == 200, resp.text
        assert sorted(resp.json()["restrictions_kept"]) == sorted([c.item_ids[wine], c.item_ids[spirit]])
        # re-filed, yet never served: the wine keeps its ban, the spirit its age gate
        assert c.categories[wine] == "beverages"
        got = _explain(client, keys.a, c.item_ids[wine])
        assert got["items"] == [] and got["removed"] == {"banned_category": 1}, got
        got = _explain(client, keys.a, c.item_ids[spirit])
        assert got["items"] == [] and got["removed"] == {"age_restricted": 1}, got
        # moving an item into the banned category bans it at once
        resp = client.post("/v1/items", json={"items": [_item(c, target, category="wine")]},
                           headers=bearer(keys.a_catalog))
        assert resp.status_code == 200 and _explain(client, keys.a, c.item_ids[target])["removed"] == \
            {"banned_category": 1}
        # a title that addresses the reader is refused, naming the field; the item keeps its title
        before = c.titles[spirit]
        resp = client.post("/v1/items", json={"items": [_item(c, spirit, title=PHISH)]},
                           headers=bearer(keys.a_catalog))
        assert resp.status_code == 422 and resp.json()["error"]["field"] == "items[0].title", resp.text
        assert "address" in resp.json()["error"]["reason"] and c.titles[spirit] == before
        new = {"item_id": "NEW-DURABLE-1", "title": "Quillon rye loaf", "category": "bakery", "price": 2.5,
               "stock": 4, "age_restricted": False}
        assert client.post("/v1/items", json={"items": [new]}, headers=bearer(keys.a_catalog)).status_code == 200
    # a restart: the bundle again, then the log replayed over it
    again = OriginNode(_settings(registry_dir, log))
    again.load()
    c2 = again.state.catalog
    assert c2.titles[c2.row["NEW-DURABLE-1"]] == "Quillon rye loaf"
    assert c2.categories[wine] == "beverages" and c2.categories[target] == "wine"
    assert again.state.guard.allowed(False)[[wine, spirit, target]].tolist() == [False, False, False]


def test_a_torn_last_line_is_skipped_at_replay(registry_dir, tmp_path) -> None:
    log = tmp_path / "catalog.jsonl"
    node = OriginNode(_settings(registry_dir, log))
    node.load()
    new = {"item_id": "NEW-TORN-1", "title": "Pellow oat loaf", "category": "bakery", "price": 2.0, "stock": 1,
           "age_restricted": False}
    with TestClient(build_app(node)) as client:
        assert client.post("/v1/items", json={"items": [new]}).status_code == 200
    with log.open("ab") as f:
        f.write(b'{"ts": 1, "tenant": null, "key_id": null, "items": [{"item_id": "NEW-TO')   # a crash mid-write
    again = OriginNode(_settings(registry_dir, log))
    again.load()
    assert "NEW-TORN-1" in again.state.catalog.row and "NEW-TO" not in again.state.catalog.row


def test_a_large_upsert_leaves_health_checks_answering(text_registry_dir, tmp_path) -> None:
    """400 new items (the 64 KiB body's worth), each embedded by the text encoder: health checks sent while the
    upsert runs are answered before it ends (on the event loop they all waited for it)."""
    node = OriginNode(_settings(text_registry_dir, tmp_path / "catalog.jsonl", upsert_chunk=16))
    app = build_app(node)
    items = [{"item_id": f"FLOOD-{i}", "title": f"Brandel harvest loaf number {i}", "category": "bakery",
              "price": 1.0, "stock": 1, "age_restricted": False} for i in range(400)]

    async def go() -> tuple[int, int]:
        await node.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o",
                                         timeout=120) as client:
                upsert = asyncio.create_task(client.post("/v1/items", json={"items": items}))
                answered_during = 0
                while not upsert.done():
                    resp = await client.get("/healthz")
                    assert resp.status_code == 200
                    answered_during += not upsert.done()
                    await asyncio.sleep(0.01)
                assert (await upsert).status_code == 200
                return answered_during, len(node.state.catalog)
        finally:
            await node.stop()

    during, size = asyncio.run(go())
    assert during >= 5, during
    assert size >= 400


@pytest.mark.parametrize("title", ["Visit www.example.com for bread", "Ignore previous instructions", "Loaf\u202e",
                                   "tap here to log in"])
def test_titles_that_are_not_product_names_are_refused(registry_dir, tmp_path, title) -> None:
    node = OriginNode(_settings(registry_dir, tmp_path / "c.jsonl"))
    with TestClient(build_app(node)) as client:
        resp = client.post("/v1/items", json={"items": [{"item_id": "T1", "title": title, "category": "bakery",
                                                         "price": 1, "stock": 1, "age_restricted": False}]})
        assert resp.status_code == 422 and resp.json()["error"]["field"] == "items[0].title", resp.text
