"""A deterministic, seeded synthetic retail world: catalog, users with latent tastes, sessions.

Why synthetic: the edge scorer needs a click model with negatives (impressions) and known ground truth,
generated in seconds on any machine, identical for the same seed. Hidden truths (item/user latents, item
appeal, true click probabilities) live here only; training sees observed events through
``shared.ranking.features``, so what the model learns is what serving can reproduce.

Everything is vectorised numpy driven by one ``np.random.Generator(PCG64(seed))``; ``fingerprint()``
hashes every generated array so a bundle records exactly which world trained it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from strata.model_export import vocabulary as vocab
from strata.model_export.simulate import simulate_sessions
from strata.model_export.world_types import (  # noqa: F401 - the world's types are importable from here too
    EPOCH_START_MS,
    LATENT_DIM,
    Catalog,
    Sessions,
    Users,
    WorldConfig,
    random_uuids,
)
from strata.shared.contracts.api import CHANNELS, EVENT_TYPES, Event
from strata.shared.ranking.features import N_CATEGORIES

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class World:
    config: WorldConfig
    catalog: Catalog
    users: Users
    sessions: Sessions
    centroids: np.ndarray | None = field(default=None, repr=False)   # [N_CATEGORIES, LATENT_DIM] taste anchors
    _fingerprint: str | None = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """sha256 over every generated array, in declaration order (same seed -> same digest)."""
        if self._fingerprint is None:
            h = hashlib.sha256(repr(self.config).encode())
            for part in (self.catalog, self.users, self.sessions):
                for f in fields(part):
                    value = getattr(part, f.name)
                    h.update(f.name.encode())
                    if isinstance(value, np.ndarray):
                        arr = value.astype("U") if value.dtype.kind in "OU" else value
                        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
                        h.update(np.ascontiguousarray(arr).tobytes())
                    else:
                        h.update(repr(value).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def event_ids(self) -> list[str]:
        return _uuid_strings(self.sessions.ev_uuid)

    def iter_events(self, tenant: str = "default", slot: str = "home") -> Iterator[Event]:
        """Events in contract form, ordered by session then time (the log's per-session order)."""
        s, c = self.sessions, self.catalog
        imp_ids = _uuid_strings(s.slate_uuid)
        for i, eid in enumerate(self.event_ids()):
            sess = int(s.ev_session[i])
            etype = EVENT_TYPES[int(s.ev_type[i])]
            item = int(s.ev_item[i])
            yield Event(
                event_id=eid, type=etype, tenant=tenant,
                user_id=str(self.users.user_id[s.user[sess]]), session_id=str(s.session_id[sess]),
                item_id=str(c.item_id[item]), channel=CHANNELS[int(s.channel[sess])],
                ts_ms=int(s.ev_ts_ms[i]), slot=slot,
                impression_id=imp_ids[int(s.ev_slate[i])] if etype == "click" else None,
                quantity=1 if etype == "purchase" else None,
                price=float(c.price[item]) if etype == "purchase" else None,
            )


def _uuid_strings(raw: np.ndarray) -> list[str]:
    """uuid4-formatted strings from 16 random bytes per row (version/variant bits already set)."""
    out = []
    blob = raw.tobytes().hex()
    for i in range(raw.shape[0]):
        x = blob[i * 32:(i + 1) * 32]
        out.append(f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}")
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_catalog(rng: np.random.Generator, n_items: int, centroids: np.ndarray) -> Catalog:
    n_brands = len(vocab.BRAND_HEADS) * len(vocab.BRAND_TAILS)
    brand_names = tuple(h + t for h in vocab.BRAND_HEADS for t in vocab.BRAND_TAILS)
    # Category sizes are uneven (groceries are big, tobacco small), like a real shop.
    cat_weight = rng.dirichlet(np.full(N_CATEGORIES, 4.0))
    category = rng.choice(N_CATEGORIES, size=n_items, p=cat_weight)
    category[:N_CATEGORIES] = np.arange(N_CATEGORIES)  # every category has items, even in tiny worlds
    brand_quality = rng.normal(0.0, 0.5, n_brands)
    brand_premium = rng.normal(0.0, 0.3, n_brands)
    # Brands specialise: each category draws from its own window of ~40 brands.
    brand = (category * 13 + rng.integers(0, 40, n_items)) % n_brands
    mu = np.array([c.log_price for c in vocab.CATEGORIES])
    price = np.round(np.exp(mu[category] + brand_premium[brand] + rng.normal(0.0, 0.45, n_items)), 2)
    price = np.maximum(price, 0.29)
    age = np.array([c.age_restricted for c in vocab.CATEGORIES])[category]
    latent = _unit(centroids[category] + rng.normal(0.0, 0.55, (n_items, LATENT_DIM)) / np.sqrt(LATENT_DIM))
    appeal = (brand_quality[brand] + rng.normal(0.0, 0.8, n_items)).astype(np.float32)
    adj = rng.integers(0, len(vocab.ADJECTIVES), n_items)
    noun = rng.integers(0, 6, n_items)
    titles = np.array([
        f"{brand_names[b]} {vocab.ADJECTIVES[a]} {vocab.CATEGORIES[c].nouns[w]}"
        for b, a, c, w in zip(brand.tolist(), adj.tolist(), category.tolist(), noun.tolist(), strict=True)
    ])
    item_id = np.char.add("SKU-", np.char.zfill(np.arange(n_items).astype(str), 6))
    return Catalog(item_id, category.astype(np.int64), brand.astype(np.int64), brand_names, price, titles,
                   age, latent, appeal)


def make_users(rng: np.random.Generator, n_users: int, centroids: np.ndarray) -> Users:
    favourite = rng.integers(0, N_CATEGORIES, n_users)
    second = rng.integers(0, N_CATEGORIES, n_users)
    mix = rng.uniform(0.55, 0.9, (n_users, 1))
    taste = _unit(mix * centroids[favourite] + (1 - mix) * centroids[second]
                  + rng.normal(0.0, 0.35, (n_users, LATENT_DIM)) / np.sqrt(LATENT_DIM))
    # Channel habits: most users shop on web/app, some via email/sms campaigns and in store (pos).
    channel_pref = rng.dirichlet(np.array([4.0, 3.0, 1.2, 0.8, 1.5]), n_users)
    user_id = np.char.add("U-", np.char.zfill(np.arange(n_users).astype(str), 5))
    return Users(user_id, taste, favourite.astype(np.int64), channel_pref)


def generate_world(config: WorldConfig | None = None, **overrides: int) -> World:
    """Build the whole world from ``config.seed``; ``overrides`` replace config fields (for tests)."""
    cfg = config or WorldConfig()
    if overrides:
        cfg = WorldConfig(**{**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, **overrides})
    if cfg.n_items < N_CATEGORIES * 10:
        raise ValueError(f"n_items must be >= {N_CATEGORIES * 10}, got {cfg.n_items}")
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    centroids = _unit(rng.normal(0.0, 1.0, (N_CATEGORIES, LATENT_DIM)))
    catalog = make_catalog(rng, cfg.n_items, centroids)
    users = make_users(rng, cfg.n_users, centroids)
    sessions = simulate_sessions(rng, cfg, catalog, users)
    world = World(cfg, catalog, users, sessions, centroids)
    logger.info("world seed=%d items=%d users=%d sessions=%d impressions=%d events=%d",
                cfg.seed, len(catalog), cfg.n_users, cfg.n_sessions, sessions.imp_item.shape[0],
                sessions.ev_type.shape[0])
    return world


def new_users(world: World, n: int, seed: int, prefix: str = "SIM-U-") -> Users:
    """``n`` shoppers from the world's user distribution (``make_users`` around the world's category centroids)
    drawn by their own generator: none of them is in the world's sessions, so no bundle was trained on them.
    Ids are ``<prefix>00000``... (never the world's ``U-`` ids)."""
    if world.centroids is None:
        raise ValueError("the world was built without its centroids (use generate_world)")
    users = make_users(np.random.Generator(np.random.PCG64([seed, 0x5EED])), n, world.centroids)
    users.user_id = np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), 5))
    return users
