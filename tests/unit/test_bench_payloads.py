"""Payload generator: seeded determinism, Zipf repetition with identical repeats, unique mix."""

from __future__ import annotations

import numpy as np

from strata.loadtest.loadgen import UNIQUE_MARKER
from strata.loadtest.payloads import (
    Catalog,
    PayloadSpec,
    cached_mix,
    draw_candidates,
    encode_json,
    encode_msgpack,
    repeat_share,
    unique_mix,
)
from strata.shared.contracts.api import parse_recommend

SPEC = PayloadSpec(n_candidates=20, sessions=50, seed=3)


def _catalog(n: int = 300) -> Catalog:
    w = 1.0 / np.arange(1, n + 1)
    return Catalog([f"sku-{i:04d}" for i in range(n)], w / w.sum())


def test_cached_mix_is_deterministic_and_valid() -> None:
    a = encode_json(cached_mix(_catalog(), 200, SPEC))
    b = encode_json(cached_mix(_catalog(), 200, SPEC))
    assert a == b
    reqs = cached_mix(_catalog(), 200, SPEC)
    for r in reqs:
        parsed = parse_recommend(r)
        assert len(parsed.candidates) == 20 == len(set(parsed.candidates))
    assert encode_json(cached_mix(_catalog(), 200, PayloadSpec(20, 50, seed=4))) != a


def test_cached_mix_repeats_are_identical_requests() -> None:
    reqs = cached_mix(_catalog(), 400, SPEC)
    by_key: dict[tuple[str, str], dict] = {}
    for r in reqs:
        key = (r["session_id"], r["slot"])
        assert by_key.setdefault(key, r) == r
    sessions = [r["session_id"] for r in reqs]
    counts = sorted((sessions.count(s) for s in set(sessions)), reverse=True)
    assert counts[0] > 5 * counts[len(counts) // 2]   # Zipf-like: a head of frequent sessions
    assert 0.5 < repeat_share(reqs) < 1.0


def test_unique_mix_marks_every_session_and_draws_fresh_candidates() -> None:
    reqs = unique_mix(_catalog(), 30, SPEC)
    assert all(r["session_id"] == "n-" + UNIQUE_MARKER.decode() for r in reqs)
    assert len({tuple(r["candidates"]) for r in reqs}) == 30
    plain = unique_mix(_catalog(), 3, SPEC, marker=False)
    assert [r["session_id"] for r in plain] == ["n-000000000000", "n-000000000001", "n-000000000002"]
    assert encode_json(unique_mix(_catalog(), 30, SPEC)) == encode_json(reqs)


def test_draw_candidates_distinct_even_when_catalog_is_small() -> None:
    rng = np.random.default_rng(0)
    ids = draw_candidates(rng, _catalog(25), 25)
    assert sorted(ids) == [f"sku-{i:04d}" for i in range(25)]
    assert len(draw_candidates(rng, _catalog(25), 100)) == 25


def test_repeat_share_exact() -> None:
    reqs = [{"session_id": s, "slot": "home"} for s in ("a", "b", "a", "a")]
    assert repeat_share(reqs) == 0.5
    assert repeat_share([]) == 0.0


def test_msgpack_encoding_matches_json_content() -> None:
    import msgpack
    import orjson

    reqs = cached_mix(_catalog(), 5, SPEC)
    assert [msgpack.unpackb(b) for b in encode_msgpack(reqs)] == [orjson.loads(b) for b in encode_json(reqs)]
