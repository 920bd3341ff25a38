"""Guardrails at the edge, on the real bundle: a property test over many random requests, the fill from
the pool, reload of the banned lists without a restart, and the env key from the issue."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.edge.node import EdgeNode
from strata.shared.config import SettingsSource, load_settings
from strata.shared.contracts.api import CHANNELS
from strata.shared.models.bundle import ITEMS_FILE, read_current

JSON = b"application/json"
BANNED_CATEGORIES = ("toys", "snacks")


@pytest.fixture(scope="module")
def catalog(registry_dir: Path) -> dict:
    version = read_current(registry_dir, "edge-scorer")
    t = pq.read_table(registry_dir / "edge-scorer" / version / ITEMS_FILE,
                      columns=["item_id", "category", "age_restricted"]).to_pydict()
    return {"ids": t["item_id"], "category": dict(zip(t["item_id"], t["category"], strict=True)),
            "age": dict(zip(t["item_id"], [bool(a) for a in t["age_restricted"]], strict=True))}


@pytest.fixture(scope="module")
def banned_items(catalog) -> tuple[str, ...]:
    # popular, unrestricted, allowed-category items, so the ban really has something to remove
    ok = [i for i in catalog["ids"][:400] if not catalog["age"][i] and catalog["category"][i] not in BANNED_CATEGORIES]
    return tuple(ok[::7][:25])


def make_node(registry_dir: Path, guardrails: dict, source: SettingsSource | None = None, **edge) -> EdgeNode:
    cfg = {"registry": str(registry_dir), "store": {"url": "none"}, "cache": {"response_size": 0}, **edge}
    node = EdgeNode(load_settings(edge=cfg, guardrails=guardrails), source)
    node.load_model()
    return node


def ask(node: EdgeNode, body: dict) -> dict:
    status, _, payload = asyncio.run(node.handle_recommend(orjson.dumps(body), JSON, None))
    assert status == 200, payload
    return orjson.loads(payload)


def check_answer(answer: dict, body: dict, catalog: dict, banned: set[str], banned_cats: set[str],
                 unknown_allowed: bool = True) -> None:
    ids = [it["item_id"] for it in answer["items"]]
    assert ids, "an empty answer"
    assert len(set(ids)) == len(ids), "an item twice"
    given = list(dict.fromkeys(body.get("candidates") or []))
    assert len(ids) == (min(body["k"], len(given)) if given else body["k"]), "a short answer"
    age_ok = body["context"].get("age_verified", False)
    for i in ids:
        assert i not in banned, f"banned item {i}"
        known = i in catalog["category"]
        if not known:
            assert unknown_allowed and i in given, f"unknown item {i} not from the request"
            continue
        assert catalog["category"][i] not in banned_cats, f"banned category {catalog['category'][i]}"
        assert age_ok or not catalog["age"][i], f"age-restricted {i} served without age verification"
    per_cat = Counter(c for c in (catalog["category"].get(i) for i in ids) if c is not None)
    most = max(per_cat.values(), default=0)
    if "diversity_cap_relaxed" in answer["route_reasons"]:
        assert most > 3, "says the cap was relaxed but keeps it"
    else:
        assert most <= 3, f"more than 3 of one category in the answer: {per_cat.most_common(2)}"


def request_bodies(catalog: dict):
    ids = catalog["ids"]
    return st.fixed_dictionaries({
        "user_id": st.just("u1"),
        "session_id": st.text("abcdef0123456789", min_size=1, max_size=8),
        "slot": st.sampled_from(["home", "pdp", "cart"]),
        "k": st.integers(1, 100),
        "context": st.fixed_dictionaries({"channel": st.sampled_from(CHANNELS),
                                          "age_verified": st.booleans()}),
    }, optional={
        "candidates": st.lists(st.one_of(st.sampled_from(ids[:3000]), st.sampled_from(ids),
                                         st.sampled_from(["NEW-1", "NEW-2", "NEW-3"])), max_size=300),
    })


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_guardrail_is_ever_broken(data, registry_dir, catalog, banned_items) -> None:
    node = _node_cache(registry_dir, banned_items)
    body = data.draw(request_bodies(catalog))
    answer = ask(node, body)
    check_answer(answer, body, catalog, set(banned_items), set(BANNED_CATEGORIES))


def test_long_answers_hold_at_most_3_of_a_category(registry_dir, catalog) -> None:
    """The design's rule by default: 3 per category in the whole answer, not per 10 positions (under the old
    window, answers with k > 10 held 4-6 items of one category); the pools' 17+ allowed categories fill
    k <= 40 without relaxing it."""
    node = make_node(registry_dir, {"banned_categories": BANNED_CATEGORIES})
    pool = [i for i in catalog["ids"][:3000] if catalog["category"][i] not in BANNED_CATEGORIES]
    for n in range(60):
        body = {"user_id": "u", "session_id": f"s{n}", "k": 11 + n % 30, "context": {"channel": CHANNELS[n % 5]}}
        if n % 2:
            body["candidates"] = pool[n * 37 % 2000:][:150]
        answer = ask(node, body)
        per_cat = Counter(catalog["category"][it["item_id"]] for it in answer["items"])
        assert len(answer["items"]) == body["k"] and max(per_cat.values()) <= 3, (n, per_cat.most_common(3))
        assert "diversity_cap_relaxed" not in answer["route_reasons"]


def test_an_answer_longer_than_3_per_category_allows_says_so(registry_dir, catalog) -> None:
    node = make_node(registry_dir, {"banned_categories": BANNED_CATEGORIES})
    answer = ask(node, {"user_id": "u", "session_id": "s", "k": 100})     # 22 categories x 3 = 66 < 100
    per_cat = Counter(catalog["category"][it["item_id"]] for it in answer["items"])
    assert len(answer["items"]) == 100 and "diversity_cap_relaxed" in answer["route_reasons"]
    assert max(per_cat.values()) - min(per_cat.values()) <= 2 or len(per_cat) < 22     # raised step by step


_NODES: dict = {}


def _node_cache(registry_dir: Path, banned_items: tuple[str, ...]) -> EdgeNode:
    key = (str(registry_dir), banned_items)
    if key not in _NODES:
        _NODES[key] = make_node(registry_dir, {"banned_items": banned_items, "banned_categories": BANNED_CATEGORIES})
    return _NODES[key]


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_unknown_items_blocked_by_policy(data, registry_dir, catalog) -> None:
    key = "block"
    if key not in _NODES:
        _NODES[key] = make_node(registry_dir, {"unknown_items": "block"})
    body = data.draw(request_bodies(catalog))
    check_answer(ask(_NODES[key], body), body, catalog, set(), set(), unknown_allowed=False)


def test_age_restricted_candidates_are_replaced_from_the_pool(registry_dir, catalog) -> None:
    node = make_node(registry_dir, {})
    wine = [i for i in catalog["ids"] if catalog["category"][i] == "wine"][:20]
    body = {"user_id": "u", "session_id": "s", "k": 5, "candidates": wine, "context": {"channel": "web"}}
    answer = ask(node, body)
    check_answer(answer, body, catalog, set(), set())
    assert not set(it["item_id"] for it in answer["items"]) & set(wine)
    assert "guardrail_removed_total" in node.exposition().decode()
    text = node.exposition().decode()
    assert 'strata_edge_guardrail_removed_total{reason="age_restricted"} 20.0' in text
    assert "strata_edge_items_filled_total 5.0" in text
    # verified: wine may be served, but at most 3 of one category; the other 2 come from the pool
    verified = ask(node, {**body, "context": {"channel": "web", "age_verified": True}})
    got = [it["item_id"] for it in verified["items"]]
    assert len(got) == 5 and len(set(got) & set(wine)) == 3


def test_a_category_page_gets_at_most_three_of_its_category(registry_dir, catalog) -> None:
    node = make_node(registry_dir, {})
    shoes = [i for i in catalog["ids"] if catalog["category"][i] == "shoes"][:50]
    answer = ask(node, {"user_id": "u", "session_id": "s", "k": 10, "candidates": shoes})
    cats = Counter(catalog["category"][it["item_id"]] for it in answer["items"])
    assert cats["shoes"] == 3 and sum(cats.values()) == 10


def test_banned_categories_from_the_environment(registry_dir, catalog, monkeypatch) -> None:
    monkeypatch.setenv("STRATA_GUARDRAILS__BANNED_CATEGORIES", '["wine", "fresh produce"]')
    settings_ = load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}})
    assert settings_.guardrails.banned_categories == ("wine", "fresh produce")
    node = EdgeNode(settings_)
    node.load_model()
    answer = ask(node, {"user_id": "u", "session_id": "s", "k": 50, "context": {"age_verified": True}})
    assert not {catalog["category"][it["item_id"]] for it in answer["items"]} & {"wine", "fresh produce"}


def test_banned_lists_reload_from_the_config_file_without_a_restart(registry_dir, catalog, tmp_path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("guardrails:\n  banned_categories: []\n")
    source = SettingsSource(path, {"edge": {"registry": str(registry_dir), "store": {"url": "none"}}})
    node = EdgeNode(source.load(), source)   # response cache ON: a reload must not serve cached answers
    node.load_model()
    body = {"user_id": "u", "session_id": "s", "k": 30, "context": {"age_verified": True}}
    before = {catalog["category"][it["item_id"]] for it in ask(node, body)["items"]}
    target = sorted(before)[0]
    path.write_text(f"guardrails:\n  banned_categories: [{target!r}]\n  banned_items: []\n")
    assert node.config_watch.check_once() is True
    after = ask(node, body)
    assert after["timing"]["cache"] == "miss"
    assert target not in {catalog["category"][it["item_id"]] for it in after["items"]}
    assert node.slot.policy.banned_categories == (target,)
    # a file that no longer validates is refused; the running policy stays
    path.write_text("guardrails:\n  max_per_category: 0\n")
    assert node.config_watch.check_once() is False
    assert node.slot.policy.banned_categories == (target,)
    assert 'strata_edge_policy_reloads_total{result="invalid"} 1.0' in node.exposition().decode()
