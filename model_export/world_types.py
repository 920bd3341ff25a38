"""The synthetic world's data types, shared by the generator (``world``) and the simulator (``simulate``).

Kept apart so that ``world`` (which drives the simulation) and ``simulate`` (which fills ``Sessions``)
both import these without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.model_export import vocabulary as vocab
from strata.shared.ranking.features import N_CATEGORIES

LATENT_DIM = 12
EPOCH_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
if len(vocab.CATEGORIES) != N_CATEGORIES:  # the one-hot in shared.ranking.features must cover every category
    raise RuntimeError(f"vocabulary has {len(vocab.CATEGORIES)} categories, features expect {N_CATEGORIES}")


@dataclass(frozen=True, slots=True)
class WorldConfig:
    seed: int = 7
    n_items: int = 12_000
    n_users: int = 3_000
    n_sessions: int = 40_000
    slate_size: int = 6
    max_steps: int = 12
    days: int = 28


@dataclass(slots=True)
class Catalog:
    item_id: np.ndarray  # str "SKU-000123"
    category: np.ndarray  # int64 index into vocabulary.CATEGORIES
    brand: np.ndarray  # int64 index into brand_names
    brand_names: tuple[str, ...]
    price: np.ndarray  # float64, two decimals
    title: np.ndarray  # str
    age_restricted: np.ndarray  # bool
    latent: np.ndarray  # float32 [n, LATENT_DIM], hidden truth, unit norm
    appeal: np.ndarray  # float32, hidden truth: base attractiveness (drives exposure and clicks)

    @property
    def category_names(self) -> np.ndarray:
        return np.array([c.name for c in vocab.CATEGORIES])[self.category]

    def __len__(self) -> int:
        return int(self.item_id.shape[0])


@dataclass(slots=True)
class Users:
    user_id: np.ndarray  # str "U-00042"
    taste: np.ndarray  # float32 [n, LATENT_DIM], hidden truth, unit norm
    favourite: np.ndarray  # int64 favourite category
    channel_pref: np.ndarray  # float64 [n, len(CHANNELS)] rows sum to 1


@dataclass(slots=True)
class Sessions:
    """Per-session columns plus impressions (what was shown) and the events they led to."""

    session_id: np.ndarray  # str "S-000001"
    user: np.ndarray  # int64 index into Users
    channel: np.ndarray  # int64 index into CHANNELS
    device: np.ndarray  # int64 index into DEVICES
    start_ms: np.ndarray  # int64 UTC epoch ms
    hour: np.ndarray  # int64 UTC hour of the session start
    # impressions: one row per item shown, ordered by (session, step, position)
    imp_session: np.ndarray
    imp_step: np.ndarray
    imp_pos: np.ndarray
    imp_item: np.ndarray
    imp_ts_ms: np.ndarray
    imp_p_true: np.ndarray  # float32 true click probability (for oracle metrics only)
    imp_clicked: np.ndarray  # bool
    slate_uuid: np.ndarray  # uint8 [n_slates, 16]; slate s = (session, step), impression_id
    imp_slate: np.ndarray  # int64 index into slate_uuid
    # events: click/view/cart/purchase, ordered by (session, ts)
    ev_type: np.ndarray  # int64 index into EVENT_TYPES
    ev_session: np.ndarray
    ev_item: np.ndarray
    ev_ts_ms: np.ndarray
    ev_slate: np.ndarray
    ev_uuid: np.ndarray  # uint8 [n_events, 16]


def random_uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uuid4 byte strings from the world's rng, so ids are as deterministic as everything else."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw
