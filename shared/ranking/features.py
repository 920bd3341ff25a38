"""Edge scorer features: the ONE implementation used by training (model_export) and serving (edge).

A scoring row is ``[item block | context block | session block]``:
- item block (ITEM_DIM): category one-hot, standardised log price, log popularity, age-restricted flag.
  Built once per bundle (``item_block``) and gathered by index per request.
- context block (CONTEXT_DIM): channel one-hot, device one-hot, hour on the unit circle.
  Built once per request (``context_block``) and broadcast over candidates.
- session block (SESSION_DIM): has-session flag and cosine similarity of the session vector to the item
  embedding (``assemble``'s ``sims``). The session vector has one definition, ``shared.ranking.session_update``:
  the processor serves it, and training replays the sessions' events through it (``model_export.dataset``).
Changing any of this changes FEATURE_SPEC_VERSION; the edge refuses bundles built for another spec.
"""

from __future__ import annotations

import math

import numpy as np

from strata.shared.contracts.api import CHANNELS, DEVICES

FEATURE_SPEC_VERSION = "edge-features/1"
N_CATEGORIES = 24
EMBED_DIM = 16
ITEM_DIM = N_CATEGORIES + 3
CONTEXT_DIM = len(CHANNELS) + len(DEVICES) + 2
SESSION_DIM = 2
FEATURE_DIM = ITEM_DIM + CONTEXT_DIM + SESSION_DIM
_CTX0 = ITEM_DIM
_SES0 = ITEM_DIM + CONTEXT_DIM
_LOG_PRICE_MEAN, _LOG_PRICE_STD = 3.0, 1.5
_POP_SCALE = 10.0
_CHANNEL_IDX = {c: i for i, c in enumerate(CHANNELS)}
_DEVICE_IDX = {d: i for i, d in enumerate(DEVICES)}


def item_block(category: np.ndarray, price: np.ndarray, popularity: np.ndarray,
               age_restricted: np.ndarray) -> np.ndarray:
    """Item features for a whole catalog: float32 [n_items, ITEM_DIM]."""
    category = np.asarray(category, dtype=np.int64)
    if category.size and (category.min() < 0 or category.max() >= N_CATEGORIES):
        raise ValueError(f"category index must be in [0, {N_CATEGORIES})")
    n = category.shape[0]
    out = np.zeros((n, ITEM_DIM), dtype=np.float32)
    out[np.arange(n), category] = 1.0
    out[:, N_CATEGORIES] = (np.log1p(np.asarray(price, dtype=np.float64)) - _LOG_PRICE_MEAN) / _LOG_PRICE_STD
    out[:, N_CATEGORIES + 1] = np.log1p(np.asarray(popularity, dtype=np.float64)) / _POP_SCALE
    out[:, N_CATEGORIES + 2] = np.asarray(age_restricted, dtype=np.float32)
    return out


def context_block(channel: str, device: str, hour: int) -> np.ndarray:
    """Context features for one request: float32 [CONTEXT_DIM]. Unknown device maps to 'other'."""
    out = np.zeros(CONTEXT_DIM, dtype=np.float32)
    out[_CHANNEL_IDX[channel]] = 1.0
    out[len(CHANNELS) + _DEVICE_IDX.get(device, len(DEVICES) - 1)] = 1.0
    angle = 2.0 * math.pi * (hour % 24) / 24.0
    out[-2] = math.sin(angle)
    out[-1] = math.cos(angle)
    return out


def assemble(item_rows: np.ndarray, context: np.ndarray, sims: np.ndarray | None,
             has_session: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Scoring matrix float32 [n, FEATURE_DIM].

    ``context`` is one request's [CONTEXT_DIM] (broadcast) or per-row [n, CONTEXT_DIM] (training).
    ``sims`` None means no session vector. ``has_session`` (per-row 0/1) is for training batches that
    mix rows with and without a session; rows without one must carry sim 0.
    ``out`` may be a preallocated buffer of at least n rows.
    """
    n = item_rows.shape[0]
    x = np.empty((n, FEATURE_DIM), dtype=np.float32) if out is None else out[:n]
    x[:, :_CTX0] = item_rows
    x[:, _CTX0:_SES0] = context
    if sims is None:
        x[:, _SES0:] = 0.0
    else:
        x[:, _SES0] = 1.0 if has_session is None else has_session
        x[:, _SES0 + 1] = sims
    return x
