"""Property: over many random catalogs (categories, age flags, stock, banned lists) and random requests
(k, age gate, consent, query, channel), no answer of the origin ever holds a banned item, an item of a
banned category, an age-restricted item without ``age_verified``, or an out-of-stock item, and the answer
(or, with ``diversity_window`` set, no run of that many consecutive positions) holds more than
``max_per_category`` items of one category unless it says ``diversity_cap_relaxed``; with the cap on the whole
answer (the default) it says so only when the items available cannot fill it under the cap.
Runs the real pipeline: Qdrant Edge shard, the bundle's ONNX scorer, the shared guardrails."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.model_export import vocabulary as vocab
from strata.origin.bundle import OriginBundle
from strata.origin.catalog import Catalog
from strata.origin.node import OriginNode
from strata.origin.retrieval import build_index
from strata.origin.scorer import OnnxRanker
from strata.origin.state import OriginState
from strata.shared.config import load_settings
from strata.shared.contracts.api import CHANNELS
from strata.shared.models import bundle as B
from strata.shared.ranking.features import EMBED_DIM, item_block
from strata.shared.ranking.guardrails import Guardrails
from strata.shared.serving.pipeline import Reply

NAMES = [c.name for c in vocab.CATEGORIES]
WORDS = ["organic", "bread", "gin", "classic", "cheese", "wine", "premium", "kite", "lager", "soap"]


def random_catalog(seed: int, n: int, n_cats: int, p_age: float, p_out: float) -> tuple[Catalog, list[str]]:
    rng = np.random.default_rng(seed)
    cat_idx = rng.choice(len(NAMES), size=n_cats, replace=False)
    cats = rng.choice(cat_idx, size=n)
    ids = [f"R{seed}-{i}" for i in range(n)]
    titles = [f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}" for i in range(n)]
    price = np.round(rng.uniform(0.5, 80, size=n), 2)
    pop = rng.integers(0, 500, size=n)
    age = rng.random(n) < p_age
    stock = (rng.random(n) >= p_out).astype(np.int64) * rng.integers(1, 9, size=n)
    vecs = rng.normal(size=(n, EMBED_DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[rng.random(n) < 0.1] = 0.0              # some items never interacted with
    names = [NAMES[c] for c in cats]
    catalog = Catalog(ids, titles, names, {NAMES[c]: int(c) for c in cat_idx}, price, pop, age, stock,
                      item_block(cats, price, pop, age), vecs)
    order = np.argsort(-pop, kind="stable")
    return catalog, [ids[i] for i in order]


@given(data=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_answer_ever_breaks_a_guardrail(registry_dir: Path, data) -> None:
    seed = data.draw(st.integers(0, 10_000), "seed")
    n = data.draw(st.integers(5, 250), "n_items")
    catalog, by_pop = random_catalog(seed, n, data.draw(st.integers(1, 8), "n_categories"),
                                     data.draw(st.floats(0, 0.6), "p_age"), data.draw(st.floats(0, 0.5), "p_out"))
    banned_cats = tuple(data.draw(st.lists(st.sampled_from(sorted(catalog.category_index)), max_size=3,
                                           unique=True), "banned_categories"))
    banned_items = tuple(data.draw(st.lists(st.sampled_from(catalog.item_ids), max_size=10, unique=True),
                                   "banned_items"))
    window = data.draw(st.one_of(st.none(), st.integers(3, 12)), "diversity_window")
    policy = Guardrails(banned_items=banned_items, banned_categories=banned_cats, max_per_category=3,
                        diversity_window=window)
    version = B.read_current(registry_dir, "edge-scorer")
    ranker = OnnxRanker(registry_dir / "edge-scorer" / version / B.MODEL_FILE)
    shard_dir = Path(tempfile.mkdtemp(prefix="strata-prop-"))
    index = build_index(catalog, "edge", str(shard_dir / "items"))
    try:
        node = OriginNode(load_settings(origin={"registry": str(registry_dir), "explore_slots": 2}))
        node.state = OriginState(OriginBundle("0.0.1", catalog, {"default": by_pop}, ranker), index, policy)
        requests = data.draw(st.lists(st.fixed_dictionaries({
            "user_id": st.just("u"), "session_id": st.just("s"), "k": st.integers(1, 40),
            "query": st.one_of(st.none(), st.sampled_from(WORDS)),
            "context": st.fixed_dictionaries({"age_verified": st.booleans(), "consent": st.booleans(),
                                              "channel": st.sampled_from(CHANNELS)})}),
            min_size=1, max_size=6), "requests")
        for body in requests:
            body = {k: v for k, v in body.items() if v is not None}
            for handler in (node.recommend, node.explain):
                reply = handler.try_now(orjson.dumps(body), None, None)
                assert isinstance(reply, Reply) and reply.status == 200, reply
                answer = orjson.loads(reply.body)
                _check(catalog, policy, body, [it["item_id"] for it in answer["items"]],
                       "diversity_cap_relaxed" in answer["route_reasons"])
    finally:
        index.close()
        shutil.rmtree(shard_dir, ignore_errors=True)


def _check(catalog: Catalog, policy: Guardrails, body: dict, items: list[str], relaxed: bool) -> None:
    verified = body["context"]["age_verified"]
    rows = [catalog.row[i] for i in items]
    assert len(set(items)) == len(items) <= body["k"]
    for r, i in zip(rows, items, strict=True):
        assert i not in policy.banned_items, i
        assert catalog.categories[r] not in policy.banned_categories, (i, catalog.categories[r])
        assert verified or not catalog.age_restricted[r], i
        assert catalog.stock[r] > 0, i
    allowed = [r for r in range(len(catalog)) if catalog.item_ids[r] not in policy.banned_items
               and catalog.categories[r] not in policy.banned_categories and catalog.stock[r] > 0
               and (verified or not catalog.age_restricted[r])]
    assert bool(items) == bool(allowed)          # never empty while an allowed item exists
    cats = [catalog.categories[r] for r in rows]
    span = policy.diversity_window or max(len(cats), 1)
    if relaxed:
        if policy.diversity_window is None:     # only when no choice of the available items keeps the cap
            per_cat = Counter(catalog.categories[r] for r in allowed)
            capacity = sum(min(n, policy.max_per_category) for n in per_cat.values())
            assert len(cats) > capacity, (cats, per_cat)
        return
    for lo in range(max(1, len(cats) - span + 1)):
        window = cats[lo:lo + span]
        assert max((window.count(c) for c in set(window)), default=0) <= policy.max_per_category, cats
