"""The locustfile's content checks (a 200 with a wrong body is a failure), its traffic model, and the gate's
option handling. The checks run in Locust against real servers in tests/e2e/test_loadtest.py."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import numpy as np
import orjson
import pytest

from strata.loadtest.checks import BadAnswer, check_events, check_ranked, request_name
from strata.loadtest.gate import Hosts, Options, _within, hosts_from, parse_run_time, read_endpoints
from strata.loadtest.server_metrics import ServerWindow, histogram_delta, parse, quantile
from strata.loadtest.traffic import EVENT_MIX, Catalog, EdgeSessions, Impressions, Shown, event_batch
from strata.shared.contracts.api import parse_event
from strata.shared.errors import ConfigError

J = "application/json"


def _answer(n: int = 3, **over) -> dict:
    body = {"items": [{"item_id": f"SKU-{i}", "score": 0.5, "explored": False} for i in range(n)], "tier": "edge",
            "confidence": 0.9, "degraded": False, "route_reasons": [], "model_version": "1.0.0",
            "request_id": "r1", "impression_id": "i1"}
    body.update(over)
    return body


def test_a_good_answer_passes_in_json_and_msgpack() -> None:
    a = check_ranked(200, orjson.dumps(_answer()), J, k=3)
    assert (a.tier, a.degraded, a.impression_id, a.items) == ("edge", False, "i1", ["SKU-0", "SKU-1", "SKU-2"])
    b = check_ranked(200, msgpack.packb(_answer(tier="origin", degraded=True)), "application/msgpack", k=3)
    assert (b.tier, b.degraded) == ("origin", True)
    # min(k, distinct candidates) when the request named its candidates
    assert check_ranked(200, orjson.dumps(_answer(2)), J, k=10, n_candidates=2).items == ["SKU-0", "SKU-1"]


@pytest.mark.parametrize("body, reason", [
    (_answer(tier="cdn"), "tier 'cdn' not in"),
    ({k: v for k, v in _answer().items() if k != "tier"}, "tier None"),
    (_answer(2), "2 items, expected 3"),
    (_answer(4), "4 items, expected 3"),
    (_answer(degraded="no"), "degraded is 'no'"),
    (_answer(request_id=""), "no request_id"),
    (_answer(route_reasons=None), "route_reasons"),
    (_answer(items={"a": 1}), "items is not a list"),
    (_answer(items=[{"item_id": "a", "score": 1}, {"score": 1}, {"item_id": "c", "score": 1}]), "items[1] has no item_id"),
    (_answer(items=[{"item_id": "a", "score": 1}] * 3), "duplicate item ids"),
    (_answer(items=[{"item_id": f"x{i}", "score": None} for i in range(3)]), "items[0].score is None"),
    ([1, 2, 3], "body is a list"),
])
def test_a_200_with_a_wrong_body_fails(body, reason) -> None:
    with pytest.raises(BadAnswer, match=None) as err:
        check_ranked(200, orjson.dumps(body), J, k=3)
    assert reason in err.value.reason


def test_status_and_encoding_failures() -> None:
    err_body = orjson.dumps({"error": {"code": "invalid_field", "field": "k", "reason": "x"}, "retriable": False})
    with pytest.raises(BadAnswer, match="HTTP 422 invalid_field"):
        check_ranked(422, err_body, J, k=3)
    with pytest.raises(BadAnswer, match="HTTP 503"):
        check_ranked(503, b"<html>busy</html>", "text/html", k=3)
    with pytest.raises(BadAnswer, match="undecodable"):
        check_ranked(200, b"{not json", J, k=3)
    with pytest.raises(BadAnswer, match="unexpected Content-Type"):
        check_ranked(200, orjson.dumps(_answer()), "text/plain", k=3)


def test_explain_answers_need_a_reason_and_may_drop_guarded_items() -> None:
    items = [{"item_id": "a", "reason": "a pick"}, {"item_id": "b", "reason": "b pick"}]
    assert check_ranked(200, orjson.dumps(_answer(items=items, tier="origin")), J, k=3, explain=True).items == ["a", "b"]
    with pytest.raises(BadAnswer, match=r"items\[1\] has no reason"):
        check_ranked(200, orjson.dumps(_answer(items=[items[0], {"item_id": "b"}], tier="origin")), J, k=2,
                     explain=True)
    with pytest.raises(BadAnswer, match="0 items, expected 1..2"):
        check_ranked(200, orjson.dumps(_answer(items=[], tier="origin")), J, k=2, explain=True)


def test_events_answer_checks() -> None:
    assert check_events(202, b'{"accepted": 3, "rejected": []}', J, sent=3) == 3
    with pytest.raises(BadAnswer, match="1 rejected, first: ts: bad"):
        check_events(202, b'{"accepted": 2, "rejected": [{"index": 1, "field": "ts", "reason": "bad"}]}', J, sent=3)
    with pytest.raises(BadAnswer, match="accepted 2 of 3"):
        check_events(202, b'{"accepted": 2, "rejected": []}', J, sent=3)
    with pytest.raises(BadAnswer, match="HTTP 200"):
        check_events(200, b'{"accepted": 3, "rejected": []}', J, sent=3)
    with pytest.raises(BadAnswer, match="not {accepted, rejected}"):
        check_events(202, b'{"ok": true}', J, sent=3)


def test_request_names() -> None:
    assert request_name("recommend", "edge") == "recommend [edge]"
    assert request_name("recommend", "origin", degraded=True) == "recommend [origin, degraded]"


def _catalog() -> Catalog:
    ids = [f"SKU-{i:06d}" for i in range(300)]
    w = np.linspace(3, 1, 300)
    return Catalog(ids, w / w.sum(), [f"Brand{i % 7} red item{i}" for i in range(300)],
                   [f"cat{i % 12}" for i in range(300)], [f"Brand{i % 7}" for i in range(300)],
                   [1.0 + i for i in range(300)])


def test_edge_sessions_repeat_identical_bodies_and_draw_k_and_candidates_in_range() -> None:
    s = EdgeSessions(_catalog(), np.random.default_rng(1), pool=50)
    bodies = [s.next() for _ in range(400)]
    keys = [(b["session_id"], b["slot"]) for b in bodies]
    assert len(set(keys)) < len(keys) / 2                       # repeats: response-cache hits
    assert len(set(keys)) > 20                                  # and misses
    same = [b for b in bodies if (b["session_id"], b["slot"]) == keys[0]]
    assert all(b is same[0] for b in same)                      # a repeat is the identical request
    for b in bodies:
        assert 10 <= b["k"] <= 24 and 40 <= len(b["candidates"]) <= 200
        assert len(set(b["candidates"])) == len(b["candidates"])


def test_event_batches_are_valid_and_clicks_carry_the_edges_impression_ids() -> None:
    cat, rng, imps = _catalog(), np.random.default_rng(2), Impressions()
    early = event_batch(cat, rng, imps, 200)
    assert not any(e["type"] == "click" for e in early)         # no answer seen yet: no click
    imps.add(Shown("u1", "s1", "imp-1", ["SKU-000001", "SKU-000002"], "app"))
    batch = event_batch(cat, rng, imps, 400)
    kinds = {e["type"] for e in batch}
    assert kinds == set(EVENT_MIX)
    for e in batch:
        parse_event(e)                                          # the ingest's own validator
        if e["type"] == "click":
            assert (e["impression_id"], e["session_id"], e["channel"]) == ("imp-1", "s1", "app")
            assert e["item_id"] in ("SKU-000001", "SKU-000002")
    assert len({e["event_id"] for e in batch}) == 400


def test_catalog_queries_come_from_titles() -> None:
    cat, rng = _catalog(), np.random.default_rng(3)
    words = {w for t in cat.titles for w in t.split()}
    for _ in range(20):
        assert set(cat.query(rng).split()) <= words
    assert Catalog.from_ids(["a", "b", "a"]).item_ids == ["a", "b"]


def test_run_time_and_targets() -> None:
    assert parse_run_time("20s") == 20 and parse_run_time("1m30s") == 90 and parse_run_time("2h") == 7200
    assert parse_run_time("45") == 45
    for bad in ("", "soon", "0s", "1x"):
        with pytest.raises(ConfigError, match="run-time"):
            parse_run_time(bad)
    assert hosts_from(Options(host="http://127.0.0.1:8080/")) == Hosts(edge="http://127.0.0.1:8080")
    assert hosts_from(Options()) is None
    with pytest.raises(ConfigError, match="not both"):
        hosts_from(Options(host="http://h:1", endpoints_file=Path("x")))
    with pytest.raises(ConfigError, match="base URL"):
        hosts_from(Options(host="127.0.0.1:8080"))


def test_endpoints_file(tmp_path: Path) -> None:
    f = tmp_path / "e.json"
    f.write_text(json.dumps({"edge": "http://a:1", "streaming": "http://b:2/", "origin": "http://c:3",
                             "store": "redis://x", "broker": "h:9"}))
    h = read_endpoints(f)
    assert h == Hosts("http://a:1", "http://b:2", "http://c:3")
    assert h.classes() == ["EdgeWorker", "RegionalClient", "EventProducer"]
    assert ("explain", "origin") in h.driven()
    assert Hosts(edge="http://a:1").classes() == ["EdgeWorker"]
    assert ("explain", "origin") not in Hosts(edge="http://a:1").driven()
    f.write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        read_endpoints(f)
    f.write_text("{}")
    with pytest.raises(ConfigError, match="names none of"):
        read_endpoints(f)


METRICS_BEFORE = """\
# TYPE strata_edge_requests_total counter
strata_edge_requests_total{route="/v1/recommend",status="200"} 100
strata_edge_requests_total{route="/metrics",status="200"} 5
# TYPE strata_edge_degraded_total counter
strata_edge_degraded_total 1
# TYPE strata_edge_request_seconds histogram
strata_edge_request_seconds_bucket{route="/v1/recommend",le="0.001"} 50
strata_edge_request_seconds_bucket{route="/v1/recommend",le="0.01"} 100
strata_edge_request_seconds_bucket{route="/v1/recommend",le="+Inf"} 100
strata_edge_request_seconds_count{route="/v1/recommend"} 100
strata_edge_request_seconds_sum{route="/v1/recommend"} 0.2
"""
METRICS_AFTER = METRICS_BEFORE.replace("} 100", "} 300").replace("le=\"0.001\"} 50", "le=\"0.001\"} 150").replace(
    "strata_edge_degraded_total 1", "strata_edge_degraded_total 11")


def test_server_window_differences_counts_and_histograms() -> None:
    w = ServerWindow({"edge": parse(METRICS_BEFORE)}, {"edge": parse(METRICS_AFTER)})
    assert w.answered("edge") == 200 and w.degraded("edge") == 10
    assert w.answered("origin") is None
    buckets = histogram_delta(parse(METRICS_BEFORE), parse(METRICS_AFTER), "strata_edge_request_seconds",
                              {"route": "/v1/recommend"})
    assert buckets == [(0.001, 100.0), (0.01, 200.0), (float("inf"), 200.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.001)
    assert quantile(0.75, buckets) == pytest.approx(0.0055)
    assert w.latency_ms("recommend", "edge", 0.5) == pytest.approx(1.0)
    assert _within(100, 109) and not _within(100, 112) and _within(2, 6, floor=5)


def test_escalated_and_cached_answers_count_for_the_tier_that_gave_them() -> None:
    """The client sees an escalated answer, and one the edge served again from its cache, under the upper tier's
    name: the edge's own answers exclude both, the origin's include the cached ones its counter never saw."""
    router = ('# TYPE strata_router_requests_total counter\n'
              'strata_router_requests_total{outcome="answered",target="origin"} %d\n'
              'strata_router_requests_total{outcome="cached",target="origin"} %d\n'
              'strata_router_requests_total{outcome="budget",target="origin"} %d\n')
    origin = ('# TYPE strata_origin_requests_total counter\n'
              'strata_origin_requests_total{route="/v1/recommend",status="200"} %d\n')
    before = {"edge": parse(METRICS_BEFORE + router % (0, 0, 0)), "origin": parse(origin % 0)}
    after = {"edge": parse(METRICS_AFTER + router % (50, 30, 40)), "origin": parse(origin % 70)}  # 20 direct
    w = ServerWindow(before, after)
    assert w.answered("edge") == 200 - 50 - 30
    assert w.answered("origin") == 70 + 30
