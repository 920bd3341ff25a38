"""Recommend-request payloads drawn from a bundle's catalog, seeded and deterministic.

Two mixes, because a response cache makes them measure different things:
- ``cached_mix``: sessions drawn from a pool with Zipf-like repetition; a session keeps its context
  and its candidate list per slot, so repeats are identical requests (what a response cache can hit).
- ``unique_mix``: every request has a session id never seen before and a freshly drawn candidate
  list, so every request is a cache miss and the figure is the scoring path itself.
Candidate ids are drawn popularity-weighted (retrieval returns popular items more often).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import orjson
import pyarrow.parquet as pq

from strata.loadtest.loadgen import UNIQUE_MARKER
from strata.shared.models.bundle import ITEMS_FILE, read_current

CHANNEL_MIX = {"web": 0.45, "app": 0.35, "email": 0.08, "sms": 0.04, "pos": 0.08}
DEVICE_MIX = {"desktop": 0.35, "mobile": 0.5, "tablet": 0.1, "other": 0.05}
COUNTRY_MIX = {"US": 0.5, "GB": 0.15, "DE": 0.15, "FR": 0.1, "JP": 0.1}
SLOT_K = {"home": 12, "pdp": 8, "cart": 4}
# Shopping traffic peaks in the evening; weights per UTC hour 0..23.
_HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 8, 8, 7, 5, 3], dtype=float)


@dataclass(frozen=True, slots=True)
class PayloadSpec:
    n_candidates: int = 100
    sessions: int = 4096        # pool size for the cached mix
    zipf_s: float = 1.1         # session repetition skew (rank r drawn with weight 1 / r**s)
    seed: int = 7


@dataclass(frozen=True, slots=True)
class Catalog:
    item_ids: list[str]
    weights: np.ndarray         # draw probability per item, sums to 1


def load_catalog(registry: str | Path, model: str = "edge-scorer") -> Catalog:
    """Item ids of the CURRENT bundle, weighted by popularity when the table has it."""
    path = Path(registry) / model / read_current(registry, model) / ITEMS_FILE
    table = pq.read_table(path)
    ids = table.column("item_id").to_pylist()
    if "popularity" in table.column_names:
        w = np.asarray(table.column("popularity").to_numpy(), dtype=np.float64) + 1.0
    else:
        w = np.ones(len(ids))
    return Catalog(ids, w / w.sum())


def _pick(rng: np.random.Generator, mix: dict[str, float]) -> str:
    keys = list(mix)
    return keys[int(rng.choice(len(keys), p=np.fromiter(mix.values(), float)))]


def draw_candidates(rng: np.random.Generator, catalog: Catalog, n: int) -> list[str]:
    """``n`` distinct ids, popularity-weighted (inverse-CDF draws, duplicates dropped, uniform top-up)."""
    n_items = len(catalog.item_ids)
    n = min(n, n_items)
    cdf = np.cumsum(catalog.weights)
    idx = np.searchsorted(cdf, rng.random(2 * n) * cdf[-1])
    idx = np.minimum(idx, n_items - 1)
    _, first = np.unique(idx, return_index=True)
    picked = list(idx[np.sort(first)][:n])
    if len(picked) < n:
        seen = set(picked)
        for j in rng.permutation(n_items):
            if len(picked) == n:
                break
            if j not in seen:
                picked.append(j)
                seen.add(j)
    return [catalog.item_ids[int(j)] for j in picked]


def _context(rng: np.random.Generator) -> dict:
    return {"channel": _pick(rng, CHANNEL_MIX), "device": _pick(rng, DEVICE_MIX),
            "country": _pick(rng, COUNTRY_MIX),
            "hour": int(rng.choice(24, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()))}


def cached_mix(catalog: Catalog, n_requests: int, spec: PayloadSpec = PayloadSpec()) -> list[dict]:
    """Requests from a Zipf-repeating session pool; a (session, slot) pair always sends the same body."""
    rng = np.random.default_rng(spec.seed)
    ranks = np.arange(1, spec.sessions + 1, dtype=np.float64)
    p = ranks ** -spec.zipf_s
    sessions = rng.choice(spec.sessions, size=n_requests, p=p / p.sum())
    slots = rng.choice(len(SLOT_K), size=n_requests, p=[0.6, 0.3, 0.1])
    slot_names = list(SLOT_K)
    contexts: dict[int, dict] = {}
    bodies: dict[tuple[int, int], dict] = {}
    out = []
    for s, sl in zip(sessions.tolist(), slots.tolist(), strict=True):
        body = bodies.get((s, sl))
        if body is None:
            ctx = contexts.get(s)
            if ctx is None:
                ctx = contexts[s] = _context(rng)
            slot = slot_names[sl]
            body = bodies[(s, sl)] = {
                "tenant": "default", "user_id": f"u{s:06d}", "session_id": f"s{s:06d}", "slot": slot,
                "k": SLOT_K[slot], "candidates": draw_candidates(rng, catalog, spec.n_candidates),
                "context": ctx,
            }
        out.append(body)
    return out


def unique_mix(catalog: Catalog, n_requests: int, spec: PayloadSpec = PayloadSpec(),
               marker: bool = True) -> list[dict]:
    """Cache-miss requests. With ``marker`` the session id carries ``UNIQUE_MARKER`` for the load
    generator to replace per request; without it the ids are made unique here (in-process use)."""
    rng = np.random.default_rng(spec.seed + 1)
    slot_names = list(SLOT_K)
    out = []
    for i in range(n_requests):
        sid = "n-" + (UNIQUE_MARKER.decode() if marker else f"{i:012x}")
        slot = slot_names[int(rng.integers(len(slot_names)))]
        out.append({"tenant": "default", "user_id": f"n{i:06d}", "session_id": sid, "slot": slot,
                    "k": SLOT_K[slot], "candidates": draw_candidates(rng, catalog, spec.n_candidates),
                    "context": _context(rng)})
    return out


def repeat_share(requests: list[dict]) -> float:
    """Share of requests identical to an earlier one in the list (an upper bound for cache hits)."""
    seen: set[tuple] = set()
    repeats = 0
    for r in requests:
        key = (r["session_id"], r["slot"])
        repeats += key in seen
        seen.add(key)
    return repeats / len(requests) if requests else 0.0


def encode_json(requests: list[dict]) -> list[bytes]:
    return [orjson.dumps(r) for r in requests]


def encode_msgpack(requests: list[dict]) -> list[bytes]:
    return [msgpack.packb(r, use_bin_type=True) for r in requests]
