"""The edge with a real online store attached, for ``strata bench edge``: an embedded ``valkey-server``
seeded with bandit counts for the workload's slots and session vectors for its sessions.

What it shows: the cost of the store path at the edge (session reads within the request budget,
answers suspended on a store read, the pipelined background refresh of every tracked slot's counts)
next to the same edge with ``--store none``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from strata.loadtest.launch import Launcher
from strata.loadtest.payloads import SLOT_K, Catalog, PayloadSpec
from strata.shared.keys import bandit_key, clicks_field, imps_field, session_key
from strata.shared.ranking.features import EMBED_DIM

COUNTED_ITEMS = 3000          # items with impressions per slot (the most popular ones)


def start_store(launcher: Launcher, core: int):
    """A valkey-server pinned to ``core`` (the load generator's: the server's core stays the edge's)."""
    valkey = launcher.store().start()
    os.sched_setaffinity(valkey.pid, {core})
    return valkey


def seed_store(valkey, catalog: Catalog, spec: PayloadSpec = PayloadSpec(), seed: int = 7) -> dict:
    """Bandit counts for every slot of the payloads (tenant ``default``) and a session vector for every
    session of the cached mix. Returns what was written (for the JSON)."""
    rng = np.random.default_rng(seed)
    top = np.argsort(-catalog.weights)[:COUNTED_ITEMS]
    client = valkey.client()
    try:
        pipe = client.pipeline(transaction=False)
        for slot in SLOT_K:
            imps = rng.poisson(200, top.shape[0])
            clicks = rng.binomial(imps, 0.05)
            mapping: dict[str, int] = {}
            for i, n, c in zip(top.tolist(), imps.tolist(), clicks.tolist(), strict=True):
                item = catalog.item_ids[i]
                mapping[imps_field(item)] = n
                mapping[clicks_field(item)] = c
            pipe.hset(bandit_key("default", slot), mapping=mapping)
        vecs = rng.normal(size=(spec.sessions, EMBED_DIM)).astype("<f4")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        now_ms = int(time.time() * 1000)
        for s in range(spec.sessions):
            pipe.hset(session_key("default", f"s{s:06d}"), mapping={"vec": vecs[s].tobytes(), "updated_ms": now_ms})
        pipe.execute()
    finally:
        client.close()
    return {"store_slots": len(SLOT_K), "store_counted_items_per_slot": int(top.shape[0]),
            "store_session_vectors": spec.sessions}
