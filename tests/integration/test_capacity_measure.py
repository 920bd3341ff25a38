"""The capacity model's memory figures come from the real thing: the real stream processor writes the synthetic
world's sessions (with an impression event per slate shown) into a real Valkey, and MEMORY USAGE is read per
key kind (loadtest.bench_capacity.memory_point)."""

from __future__ import annotations

import pytest

from strata.deploy.launcher import LAUNCHER
from strata.loadtest.bench_capacity import memory_point
from strata.shared.ranking.features import EMBED_DIM

pytestmark = pytest.mark.slow


def test_memory_per_key_is_measured_on_keys_the_processor_wrote(registry_dir) -> None:
    r = memory_point(LAUNCHER, str(registry_dir), sessions=120)
    world, keys = r["world"], r["keys"]
    assert {"session", "profile", "purchases", "impression", "seen"} <= set(keys)
    assert keys["impression"] == world["by_type"]["impression"]      # one hash per impression awaiting clicks
    assert r["seen_ids"] == world["events"]                          # every applied event id is remembered
    assert keys["session"] <= world["sessions"] and keys["profile"] <= world["users"]
    # a session hash holds at least its float32 vector and float64 accumulator
    assert r["session_bytes"] >= EMBED_DIM * (4 + 8)
    assert r["user_bytes"] > 0 and r["impression_bytes"] > 0 and r["seen_id_bytes"] > 0
    assert r["overhead_factor"] >= 1.0                               # the keyspace costs more than its keys
    assert r["log_impression_bytes"] > r["log_event_bytes"] > 0
