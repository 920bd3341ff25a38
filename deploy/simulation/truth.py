"""The hidden truth of a simulation: the synthetic world the registry's bundles were trained on, rebuilt from
the edge scorer's manifest (seed and sizes; the fingerprint must match), its true click model, and the
shoppers: new users from the world's user distribution, so none of them was in the training sessions.

Everything a policy is scored with lives here: the true click probability of what was shown (given the
shopper's taste, the session's intent so far and the context), the position bias of a shopper's clicks, the
oracle (the best k by true probability among the items any policy could serve, under the same guardrails:
the age gate and the per-category cap), NDCG@10 against the true probabilities, and cart/purchase odds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from strata.model_export.simulate import (
    DEVICE_GIVEN_CHANNEL,
    INTENT_DECAY,
    PURCHASE_GIVEN_CART,
    cart_probability,
    true_logit,
)
from strata.model_export.world import World, generate_world, new_users
from strata.model_export.world_types import LATENT_DIM, Users
from strata.shared.contracts.api import CHANNELS, DEVICES
from strata.shared.errors import ConfigError
from strata.shared.models.bundle import MANIFEST_FILE, POOLS_FILE, read_current
from strata.shared.ranking.guardrails import Guardrails

EDGE_MODEL = "edge-scorer"
MAX_STEPS = 12            # pages per session at most (the world's max_steps)
STEP_CONTINUE = 0.8       # P(another page): geometric(0.2) steps, like the world's sessions


def examination(k: int) -> np.ndarray:
    """P(a shopper looks at position i): 1 / log2(i + 2), the DCG discount (position 1: 1.0, 10: 0.29)."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


def dcg(p: np.ndarray) -> float:
    return float(np.sum(p / np.log2(np.arange(p.shape[0]) + 2.0)))


@dataclass(slots=True)
class Visit:
    """One session of one shopper: its context and the intent its clicks built (the world's in-session term)."""

    session_id: str
    channel: int
    device: int
    hour: int
    steps: int
    intent: np.ndarray = field(default_factory=lambda: np.zeros(LATENT_DIM, dtype=np.float32))
    clicked: int = 0          # clicks sent in this session so far (the stream writes a session vector)

    @property
    def context(self) -> dict:
        return {"channel": CHANNELS[self.channel], "device": DEVICES[self.device], "hour": self.hour,
                "country": "US"}


@dataclass
class Truth:
    world: World
    shoppers: Users
    row: dict[str, int]          # item id -> catalog row
    servable: np.ndarray         # bool per row: what any policy may serve (age gate closed, not banned)
    category: np.ndarray         # int64 per row
    max_per_category: int
    pools: dict[str, list[str]]  # the export's popular items per channel ("default" too)
    version: str

    @classmethod
    def load(cls, registry: Path, n_shoppers: int, seed: int, guardrails: Guardrails | None = None) -> Truth:
        """The world of ``registry``'s edge scorer and ``n_shoppers`` new shoppers drawn with ``seed``."""
        guardrails = guardrails or Guardrails()
        version = read_current(registry, EDGE_MODEL)
        bundle = registry / EDGE_MODEL / version
        manifest = json.loads((bundle / MANIFEST_FILE).read_text())
        data = manifest.get("data") or {}
        if data.get("source") != "synthetic-world" or manifest.get("serving_catalog"):
            raise ConfigError(f"{bundle} was not trained on the synthetic world: the simulation needs the "
                              "world's hidden truth (strata export without --data)", field="registry")
        world = generate_world(seed=int(data["seed"]), n_items=int(data["n_items"]), n_users=int(data["n_users"]),
                               n_sessions=int(data["n_sessions"]))
        if world.fingerprint() != manifest.get("data_fingerprint"):
            raise ConfigError(f"the world rebuilt from {bundle}'s manifest does not match its data fingerprint "
                              "(exported by another version of the world generator?)", field="registry")
        cat = world.catalog
        banned_cat = np.isin(cat.category_names, list(guardrails.banned_categories))
        banned = np.isin(cat.item_id, list(guardrails.banned_items))
        servable = ~cat.age_restricted.astype(bool) & ~banned_cat & ~banned
        pools = json.loads((bundle / POOLS_FILE).read_text())
        return cls(world, new_users(world, n_shoppers, seed), {str(i): r for r, i in enumerate(cat.item_id)},
                   servable, cat.category.astype(np.int64), guardrails.max_per_category, pools, version)

    @property
    def n_items(self) -> int:
        return len(self.world.catalog)

    # -- shoppers and sessions ----------------------------------------------------------------------------
    def visit(self, shopper: int, rng: np.random.Generator, session_id: str) -> Visit:
        """A new session: channel by the shopper's habits, device by channel, hour by the world's day."""
        channel = int(rng.choice(len(CHANNELS), p=self.shoppers.channel_pref[shopper]))
        device = int(rng.choice(len(DEVICES), p=DEVICE_GIVEN_CHANNEL[channel]))
        diurnal = 1.0 + 0.8 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
        hour = int(rng.choice(24, p=diurnal / diurnal.sum()))
        steps = int(min(rng.geometric(1.0 - STEP_CONTINUE), MAX_STEPS))
        return Visit(session_id, channel, device, hour, steps)

    # -- the true click model ------------------------------------------------------------------------------
    def p_true(self, shopper: int, visit: Visit, rows: np.ndarray) -> np.ndarray:
        """True click probability of catalog ``rows`` for this shopper in this session, now."""
        logit = true_logit(self.world.catalog, self.shoppers.taste[shopper][None], visit.intent[None],
                           rows[None, :], np.array([visit.channel]), np.array([visit.device]), np.array([visit.hour]))
        return (1.0 / (1.0 + np.exp(-logit)))[0]

    def oracle(self, shopper: int, visit: Visit, k: int) -> np.ndarray:
        """True probabilities of the best ``k`` servable items, best first, at most ``max_per_category`` of a
        category (the cap every tier applies), for this shopper in this session now."""
        p = self.p_true(shopper, visit, np.arange(self.n_items))
        p = np.where(self.servable, p, -1.0)
        top = np.argpartition(-p, min(k * 8, self.n_items - 1))[:k * 8]
        top = top[np.argsort(-p[top], kind="stable")]
        taken: list[int] = []
        per_cat: dict[int, int] = {}
        for r in top.tolist():
            c = int(self.category[r])
            if per_cat.get(c, 0) >= self.max_per_category:
                continue
            per_cat[c] = per_cat.get(c, 0) + 1
            taken.append(r)
            if len(taken) == k:
                break
        return p[np.array(taken, dtype=np.int64)]

    def click(self, visit: Visit, rows: np.ndarray, clicked: np.ndarray) -> None:
        """What the clicks do to the session's intent (the world's rule)."""
        lat = self.world.catalog.latent[rows[clicked]]
        visit.intent = (INTENT_DECAY * visit.intent + lat.sum(axis=0)).astype(np.float32)
        visit.clicked += int(clicked.sum())

    def cart(self, shopper: int, rows: np.ndarray) -> np.ndarray:
        taste = np.broadcast_to(self.shoppers.taste[shopper], (rows.shape[0], LATENT_DIM))
        return cart_probability(self.world.catalog, taste, rows)

    purchase_given_cart = PURCHASE_GIVEN_CART

    def rows_of(self, item_ids: list[str]) -> tuple[np.ndarray, int]:
        """Catalog rows of served ids; ids the world does not know are dropped (their count returned)."""
        rows = [self.row.get(i, -1) for i in item_ids]
        known = np.array([r for r in rows if r >= 0], dtype=np.int64)
        return known, len(rows) - known.shape[0]

    def price(self, row: int) -> float:
        return float(self.world.catalog.price[row])
