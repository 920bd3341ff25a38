"""The catalog through the log (issue: beyond one machine, point 4) on a real Tansu broker: ``POST /v1/items``
appends to the ``catalog`` topic and answers once the log acknowledged it and this origin applied it; every origin
given the same topic applies the same records in the same order, so two origins agree item for item after an
upsert (conflicting writes to one item through both included), and a restarted origin replays the topic."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings

pytestmark = pytest.mark.slow


def _settings(registry, broker: str, topic: str, **catalog):
    return load_settings(origin={"registry": str(registry), "catalog_log": "none", "explore_slots": 0},
                         catalog={"broker": broker, "topic": topic, **catalog},
                         guardrails={"banned_categories": ["wine"]})


def _row(c, r: int, **change) -> dict:
    return {"item_id": c.item_ids[r], "title": c.titles[r], "category": c.categories[r],
            "price": round(float(c.prices[r]), 2), "stock": int(c.stock[r]),
            "age_restricted": bool(c.age_restricted[r]), **change}


def _snapshot(node: OriginNode) -> dict:
    """Everything a catalog write can change, item for item, plus what the guardrails make of it."""
    state = node.state
    assert state is not None
    c = state.catalog
    return {"ids": list(c.item_ids), "titles": list(c.titles), "categories": list(c.categories),
            "prices": c.prices.round(4).tolist(), "stock": c.stock.tolist(),
            "age": c.age_restricted.tolist(), "features": np.round(c.features, 5).tolist(),
            "allowed": [state.guard.allowed(False).tolist(), state.guard.allowed(True).tolist()]}


def _caught_up(node: OriginNode, position: int, timeout: float = 10.0) -> None:
    feed = node.catalog_feed
    assert feed is not None
    deadline = time.monotonic() + timeout
    while feed.position < position:
        assert time.monotonic() < deadline, f"{feed.status()} never reached offset {position}"
        time.sleep(0.01)


def test_two_origins_fed_by_one_topic_agree_after_upserts_and_after_a_restart(registry_dir, tansu_proc) -> None:
    topic = f"catalog-{uuid.uuid4().hex[:8]}"
    a = OriginNode(_settings(registry_dir, tansu_proc.bootstrap, topic))
    b = OriginNode(_settings(registry_dir, tansu_proc.bootstrap, topic))
    with TestClient(build_app(a)) as ca, TestClient(build_app(b)) as cb:
        assert ca.get("/readyz").json()["catalog"]["replayed"] is True
        c = a.state.catalog
        wine = next(r for r in range(len(c)) if c.categories[r] == "wine")
        spirit = next(r for r in range(len(c)) if c.age_restricted[r] and c.categories[r] != "wine")
        plain = next(r for r in range(len(c)) if c.categories[r] == "bakery" and not c.age_restricted[r])
        new = {"item_id": "NEW-LOG-1", "title": "Quillon rye loaf", "category": "bakery", "price": 2.5,
               "stock": 4, "age_restricted": False}
        resp = ca.post("/v1/items", json={"items": [_row(c, wine, category="beverages"),
                                                    _row(c, spirit, age_restricted=False),
                                                    _row(c, plain, stock=0, price=9.99), new]})
        assert resp.status_code == 200, resp.text
        got = resp.json()
        # read-your-writes at the origin that took it, and the same restriction floor as without a topic
        assert sorted(got["restrictions_kept"]) == sorted([c.item_ids[wine], c.item_ids[spirit]])
        assert got["catalog_items"] == len(c) and "NEW-LOG-1" in c.row and c.stock[plain] == 0
        end = a.catalog_feed.position
        _caught_up(b, end)
        assert _snapshot(b) == _snapshot(a)
        assert b.state.guard.allowed(False)[[wine, spirit]].tolist() == [False, False]

        # both origins write the same item at once: one order in the log, so both end with the same row
        barrier = threading.Barrier(2)

        def write(client, title: str) -> None:
            barrier.wait()
            for i in range(5):
                r = client.post("/v1/items", json={"items": [_row(c, plain, title=f"{title} {i}", stock=i + 1)]})
                assert r.status_code == 200, r.text

        writers = [threading.Thread(target=write, args=(cl, name)) for cl, name in
                   ((ca, "Alpha rye loaf"), (cb, "Bravo rye loaf"))]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        end = max(a.catalog_feed.position, b.catalog_feed.position)
        _caught_up(a, end)
        _caught_up(b, end)
        assert a.catalog_feed.applied == b.catalog_feed.applied == 14
        assert _snapshot(b) == _snapshot(a)
        assert a.state.catalog.titles[plain].endswith(" 4")
        before = _snapshot(a)
        # and they answer identically: the same requests, item for item, the new item included
        for i, body in enumerate([{"k": 10}, {"k": 8, "query": "rye loaf"},
                                  {"k": 5, "candidates": ["NEW-LOG-1", c.item_ids[plain], c.item_ids[wine]]}]):
            body = {"user_id": f"u{i}", "session_id": f"s{i}", **body}
            ra, rb = ca.post("/v1/recommend", json=body).json(), cb.post("/v1/recommend", json=body).json()
            assert [it["item_id"] for it in ra["items"]] == [it["item_id"] for it in rb["items"]], (body, ra, rb)
            assert ra["removed"] == rb["removed"] and ra["items"], (ra, rb)

    # a new replica (or a restarted one) replays the topic over the bundle and agrees item for item
    again = OriginNode(_settings(registry_dir, tansu_proc.bootstrap, topic))
    with TestClient(build_app(again)) as client:
        assert client.get("/readyz").status_code == 200
        assert _snapshot(again) == before
        assert "strata_origin_catalog_records_applied_total 14" in client.get("/metrics").text


def test_an_unreadable_record_is_skipped_counted_and_the_rest_applied(registry_dir, tansu_proc) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    topic = f"catalog-{uuid.uuid4().hex[:8]}"

    async def put(values: list[bytes]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=tansu_proc.bootstrap, acks="all")
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v, key=b"x", partition=0)
        finally:
            await producer.stop()

    from strata.shared.catalog_feed import encode_record
    from strata.shared.contracts.origin import ItemUpdate

    asyncio.run(put([b"{not json", encode_record(ItemUpdate("NEW-AFTER-BAD", "Pellow oat loaf", "bakery", 2.0, 3,
                                                            False), None, None)]))
    node = OriginNode(_settings(registry_dir, tansu_proc.bootstrap, topic))
    with TestClient(build_app(node)) as client:
        status = client.get("/readyz").json()["catalog"]
        assert status["skipped"] == 1 and status["applied"] == 1, status
        assert "NEW-AFTER-BAD" in node.state.catalog.row


def test_post_items_is_refused_with_503_when_the_catalog_log_is_unreachable(registry_dir) -> None:
    from strata.deploy.local import free_port

    node = OriginNode(_settings(registry_dir, f"127.0.0.1:{free_port()}", "catalog", timeout_s=0.5))
    with TestClient(build_app(node)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "catalog topic not replayed yet"
        c = node.state.catalog
        before = int(c.stock[0])
        resp = client.post("/v1/items", json={"items": [_row(c, 0, stock=before + 7)]})
        assert resp.status_code == 503 and resp.json()["error"]["field"] == "catalog", resp.text
        assert "not reachable" in resp.json()["error"]["reason"]
        assert resp.headers.get("retry-after")
        assert int(c.stock[0]) == before          # nothing applied that the log did not take


def test_edges_apply_the_topic_stock_categories_age_flags_and_new_items(registry_dir, tansu_proc) -> None:
    """An edge given the catalog topic stops serving an item the moment it is out of stock, re-filed into a
    banned category or age-restricted (and a later record cannot lift the age flag: a floor, as at the origin);
    a new item joins its pool (the bandit explores it); the changes survive a bundle reinstall and a restart.
    Tier 2 (the same kernel over the same bundle) applies the same records to the same effect."""
    import asyncio

    import orjson

    from strata.edge.node import EdgeNode
    from strata.shared.ranking.guardrails import OUT_OF_STOCK
    from strata.streaming.tier2.service import Tier2Service

    topic = f"catalog-{uuid.uuid4().hex[:8]}"

    settings = load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}},
                             streaming={"registry": str(registry_dir), "store": "none",
                                        "tier2": {"log_impressions": False}},
                             catalog={"broker": tansu_proc.bootstrap, "topic": topic},
                             guardrails={"banned_categories": ["wine"]})

    def edge_node() -> EdgeNode:
        return EdgeNode(settings)

    async def served(edge: EdgeNode, n: int, candidates: list[str] | None = None) -> set[str]:
        seen: set[str] = set()
        for i in range(n):
            body: dict = {"user_id": f"u{i}", "session_id": f"s{i}", "k": 20, "context": {"channel": "web"}}
            if candidates:
                body["candidates"] = candidates
            status, _, payload = await edge.handle_recommend(orjson.dumps(body), b"application/json", None)
            assert status == 200, payload
            seen.update(it["item_id"] for it in orjson.loads(payload)["items"])
        return seen

    async def go() -> None:
        origin = OriginNode(_settings(registry_dir, tansu_proc.bootstrap, topic))
        await origin.start()
        edge = edge_node()
        await edge.start()
        t2 = Tier2Service(settings)
        await t2.start()
        try:
            assert edge.readiness()[0] == 200
            c = origin.state.catalog
            live = edge.slot.current
            pool = [live.bundle.item_ids[r] for r in live.pool("default", False).tolist()]
            plain = [i for i in pool if c.categories[c.row[i]] != "wine" and not c.age_restricted[c.row[i]]]
            oos, refiled, gated = plain[:3]
            before = await served(edge, 40)
            assert {oos, refiled, gated} <= before          # all three were being served
            new = {"item_id": "NEW-EDGE-1", "title": "Quillon rye loaf", "category": "bakery", "price": 2.5,
                   "stock": 4, "age_restricted": False}
            from strata.shared.contracts.origin import ItemUpdate

            def row(i: str, **change) -> ItemUpdate:
                r = c.row[i]
                return ItemUpdate(**{"item_id": i, "title": c.titles[r], "category": c.categories[r],
                                     "price": float(c.prices[r]), "stock": 5,
                                     "age_restricted": bool(c.age_restricted[r]), **change})

            await origin.upsert([row(oos, stock=0), row(refiled, category="wine"), row(gated, age_restricted=True),
                                 ItemUpdate(**new)])
            await asyncio.wait_for(edge.catalog_feed.wait_applied(origin.catalog_feed.position - 1), 10)
            # a later record tries to lift the age flag and to un-file the wine: both restrictions hold
            await origin.upsert([row(gated, age_restricted=False), row(refiled, category="bakery")])
            await asyncio.wait_for(edge.catalog_feed.wait_applied(origin.catalog_feed.position - 1), 10)

            def check(node: EdgeNode | Tier2Service) -> None:
                live = node.slot.current if isinstance(node, EdgeNode) else node.model
                assert live.bundle.index["NEW-EDGE-1"] == len(live.bundle.item_ids) - 1
                assert live.bundle.index["NEW-EDGE-1"] in live.pool("default", False).tolist()
                codes = live.guard.codes(False)
                assert codes[live.bundle.index[oos]] == OUT_OF_STOCK
                assert not live.guard.allowed(False)[live.bundle.index[refiled]]
                assert not live.guard.allowed(False)[live.bundle.index[gated]]
                assert live.guard.allowed(True)[live.bundle.index[gated]]     # age-verified shoppers may see it

            check(edge)
            await asyncio.wait_for(t2.catalog_feed.wait_applied(origin.catalog_feed.position - 1), 10)
            check(t2)
            assert t2.readiness()[1]["catalog"]["applied"] == 6
            after = await served(edge, 40) | await served(edge, 10, [oos, refiled, gated, "NEW-EDGE-1", *plain[3:9]])
            assert not {oos, refiled, gated} & after
            assert "NEW-EDGE-1" in after
            edge.load_model()                  # a bundle reinstall (hot reload): the topic's changes still apply
            check(edge)
            again = edge_node()                # a restarted edge replays the topic
            await again.start()
            try:
                check(again)
                assert again.catalog_feed.applied == edge.catalog_feed.applied == 6
            finally:
                await again.stop()
        finally:
            await t2.stop()
            await edge.stop()
            await origin.stop()

    asyncio.run(go())
