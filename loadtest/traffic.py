"""What the locustfile's callers send: sessions, candidates, queries and event batches drawn from the catalog.

Pure and seeded (no Locust here) so it is unit-tested apart from the load generator.

- The catalog is the registry's (the edge scorer's CURRENT bundle: ids, popularity, titles, categories,
  brands, prices); without a registry on the load machine (a remote deployment) it is learned from the
  edge's own answers (``Catalog.from_ids``), ids only.
- ``EdgeSessions``: a CDN worker's view: sessions repeat with a Zipf skew and a session keeps its context,
  and per slot its k (10-24) and its candidate list (popularity-weighted), so repeats are identical
  requests (response-cache hits) and new sessions are misses: a realistic mix of both.
- ``Impressions``: what the edge answered (session, impression id, items), for the event producer's clicks.
- ``event_batch``: a realistic mix of events, clicks on items the edge showed carrying its impression id.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHANNELS = {"web": 0.45, "app": 0.35, "email": 0.08, "sms": 0.04, "pos": 0.08}
DEVICES = {"desktop": 0.35, "mobile": 0.5, "tablet": 0.1, "other": 0.05}
COUNTRIES = {"US": 0.5, "GB": 0.15, "DE": 0.15, "FR": 0.1, "JP": 0.1}
EDGE_SLOTS = {"home": 0.5, "pdp": 0.3, "cart": 0.2}
K_RANGE = (10, 24)                    # EdgeWorker's k, inclusive
CANDIDATES_RANGE = (40, 200)          # candidates per EdgeWorker request
# Event mix of one shopper batch (impressions come from the tiers themselves, not from clients).
EVENT_MIX = {"view": 0.62, "click": 0.18, "add_to_cart": 0.08, "remove_from_cart": 0.02, "purchase": 0.03,
             "search": 0.05, "preference": 0.02}
FALLBACK_QUERIES = ("organic coffee", "running shoes", "gift for a cook", "fresh bread", "red wine",
                    "kids snacks", "vegan cheese", "shampoo")


def _pick(rng: np.random.Generator, mix: dict[str, float]) -> str:
    keys = list(mix)
    p = np.fromiter(mix.values(), float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


@dataclass(frozen=True)
class Catalog:
    item_ids: list[str]
    weights: np.ndarray                       # popularity-weighted draw probability, sums to 1
    titles: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    brands: list[str] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)

    @classmethod
    def from_registry(cls, registry: str | Path, model: str = "edge-scorer") -> Catalog:
        import pyarrow.parquet as pq

        from strata.shared.models.bundle import ITEMS_FILE, read_current

        table = pq.read_table(Path(registry) / model / read_current(registry, model) / ITEMS_FILE)
        cols = table.column_names
        ids = table.column("item_id").to_pylist()
        w = (np.asarray(table.column("popularity").to_numpy(), float) + 1.0 if "popularity" in cols
             else np.ones(len(ids)))

        def col(name: str) -> list:
            return table.column(name).to_pylist() if name in cols else []

        return cls(ids, w / w.sum(), col("title"), col("category"), col("brand"), col("price"))

    @classmethod
    def from_ids(cls, ids: list[str]) -> Catalog:
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise ValueError("no item ids")
        return cls(ids, np.full(len(ids), 1.0 / len(ids)))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cdf", np.cumsum(self.weights))
        object.__setattr__(self, "_pos", {x: i for i, x in enumerate(self.item_ids)})

    def __len__(self) -> int:
        return len(self.item_ids)

    def _rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        cdf = self._cdf  # type: ignore[attr-defined]
        return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(self) - 1)

    def draw(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` distinct ids, popularity-weighted (inverse-CDF draws, repeats dropped, uniform top-up)."""
        n = min(n, len(self))
        idx = self._rows(rng, 2 * n)
        _, first = np.unique(idx, return_index=True)
        picked = idx[np.sort(first)][:n].tolist()
        if len(picked) < n:
            seen = set(picked)
            for j in rng.permutation(len(self)).tolist():
                if len(picked) == n:
                    break
                if j not in seen:
                    picked.append(j)
                    seen.add(j)
        return [self.item_ids[i] for i in picked]

    def one(self, rng: np.random.Generator) -> int:
        return int(self._rows(rng, 1)[0])

    def index(self, item_id: str) -> int | None:
        return self._pos.get(item_id)  # type: ignore[attr-defined]

    def query(self, rng: np.random.Generator) -> str:
        """A cold-start search phrase: words of a catalog title (a brand dropped half the time), or a generic
        phrase without titles."""
        if not self.titles:
            return FALLBACK_QUERIES[int(rng.integers(len(FALLBACK_QUERIES)))]
        i = self.one(rng)
        words = self.titles[i].split()
        if len(words) > 2 and rng.random() < 0.5:
            words = words[1:]
        return " ".join(words[: int(rng.integers(1, 4))])

    def price(self, item_id: str, rng: np.random.Generator) -> float:
        i = self.index(item_id)
        if i is not None and self.prices:
            return float(self.prices[i])
        return round(float(rng.uniform(1, 60)), 2)


def context(rng: np.random.Generator) -> dict:
    return {"channel": _pick(rng, CHANNELS), "device": _pick(rng, DEVICES), "country": _pick(rng, COUNTRIES),
            "hour": int(rng.integers(24))}


class EdgeSessions:
    """Recommend bodies of one CDN edge worker: Zipf-repeating sessions, fixed body per (session, slot)."""

    def __init__(self, catalog: Catalog, rng: np.random.Generator, *, pool: int = 2000, zipf_s: float = 1.1,
                 prefix: str = "") -> None:
        self.catalog, self.rng = catalog, rng
        ranks = np.arange(1, pool + 1, dtype=float) ** -zipf_s
        self.p = ranks / ranks.sum()
        self.prefix = prefix or uuid.uuid4().hex[:6]
        self.bodies: dict[tuple[int, str], dict] = {}
        self.contexts: dict[int, dict] = {}

    def next(self) -> dict:
        s = int(self.rng.choice(len(self.p), p=self.p))
        slot = _pick(self.rng, EDGE_SLOTS)
        body = self.bodies.get((s, slot))
        if body is None:
            ctx = self.contexts.setdefault(s, context(self.rng))
            body = self.bodies[(s, slot)] = {
                "user_id": f"lt-{self.prefix}-u{s}", "session_id": f"lt-{self.prefix}-s{s}", "slot": slot,
                "k": int(self.rng.integers(K_RANGE[0], K_RANGE[1] + 1)),
                "candidates": self.catalog.draw(self.rng, int(self.rng.integers(*CANDIDATES_RANGE))),
                "context": ctx}
        return body


@dataclass(frozen=True, slots=True)
class Shown:
    user_id: str
    session_id: str
    impression_id: str
    items: list[str]
    channel: str


class Impressions:
    """The last answers the edge gave in this process (bounded): clicks are drawn from them."""

    def __init__(self, maxlen: int = 4096) -> None:
        self.recent: deque[Shown] = deque(maxlen=maxlen)

    def add(self, shown: Shown) -> None:
        self.recent.append(shown)

    def pick(self, rng: np.random.Generator) -> Shown | None:
        if not self.recent:
            return None
        # recent answers are clicked more often than old ones
        n = len(self.recent)
        return self.recent[n - 1 - min(n - 1, int(rng.geometric(0.02)) - 1)]

    def __len__(self) -> int:
        return len(self.recent)


def event_batch(catalog: Catalog, rng: np.random.Generator, impressions: Impressions, size: int,
                now_ms: int | None = None, prefix: str = "") -> list[dict]:
    """``size`` valid events of the mix; a click needs an answer the edge gave (its session, one of its
    items, its impression id) and becomes a view when there is none yet."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    prefix = prefix or uuid.uuid4().hex[:6]
    out = []
    shopper = int(rng.integers(1_000_000))
    user, session, channel = f"lt-{prefix}-u{shopper}", f"lt-{prefix}-s{shopper}", _pick(rng, CHANNELS)
    for _ in range(size):
        kind = _pick(rng, EVENT_MIX)
        ev: dict = {"event_id": uuid.uuid4().hex, "type": kind, "ts": now_ms - int(rng.integers(0, 200)),
                    "user_id": user, "session_id": session, "channel": channel}
        if kind == "click":
            shown = impressions.pick(rng)
            if shown is None:
                ev["type"] = kind = "view"
            else:
                ev.update(user_id=shown.user_id, session_id=shown.session_id, channel=shown.channel,
                          item_id=shown.items[int(rng.integers(len(shown.items)))],
                          impression_id=shown.impression_id)
        if kind in ("view", "add_to_cart", "remove_from_cart", "purchase"):
            ev["item_id"] = catalog.item_ids[catalog.one(rng)]
        if kind == "purchase":
            ev["quantity"] = int(rng.integers(1, 4))
            ev["price"] = catalog.price(ev["item_id"], rng)
        elif kind == "search":
            ev["query"] = catalog.query(rng)
        elif kind == "preference":
            if catalog.categories:
                ev["categories"] = [catalog.categories[catalog.one(rng)]]
            else:
                ev["categories"] = ["dairy"]
        out.append(ev)
    return out
