"""The local Valkey Cluster (strata.deploy.cluster, fixture tests/support/cluster.py): it forms as 3 masters + 3
replicas over all 16384 slots, serves redis-py's RedisCluster (sync and asyncio), refuses what any Redis
Cluster refuses (keys of several slots in one command or script), and a master killed with SIGKILL is replaced
by its replica, with the acknowledged writes kept and the same client object working again. The failover
time is measured and printed (not asserted: speed is for benchmarks)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from strata.deploy.cluster import SLOTS

pytestmark = pytest.mark.slow


def test_cluster_forms_with_three_masters_each_with_a_replica(fresh_cluster) -> None:
    topo = fresh_cluster.topology()
    masters = {i: t for i, t in topo.items() if t["role"] == "master"}
    replicas = {i: t for i, t in topo.items() if t["role"] == "replica"}
    assert len(masters) == 3 and len(replicas) == 3
    assert sorted(r["master_id"] for r in replicas.values()) == sorted(masters)       # one replica each
    covered = sorted(s for t in masters.values() for s in t["slots"])
    assert covered[0][0] == 0 and covered[-1][1] == SLOTS - 1
    assert all(a[1] + 1 == b[0] for a, b in zip(covered, covered[1:], strict=False))   # no gap, no overlap
    for node in fresh_cluster.nodes:
        info = node.info()
        assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 6


def test_redis_cluster_client_spreads_keys_over_every_master(fresh_cluster) -> None:
    rc: RedisCluster = fresh_cluster.client()
    try:
        for i in range(300):
            rc.set(f"strata:k{i}", i)
        assert [int(rc.get(f"strata:k{i}")) for i in range(300)] == list(range(300))
        owners = {fresh_cluster.node_for_key(f"strata:k{i}").node_id for i in range(300)}
        assert len(owners) == 3
        with rc.pipeline() as pipe:          # a cluster pipeline splits the commands per node
            for i in range(300):
                pipe.incr(f"strata:k{i}")
            assert pipe.execute() == list(range(1, 301))
    finally:
        rc.close()


def test_one_hash_tag_one_slot_and_cross_slot_is_refused(fresh_cluster) -> None:
    rc: RedisCluster = fresh_cluster.client()
    try:
        rc.mset({"strata:{t1:s1}:session": "a", "strata:{t1:s1}:profile": "b"})       # one tag: one slot
        assert rc.mget("strata:{t1:s1}:session", "strata:{t1:s1}:profile") == [b"a", b"b"]
        script = rc.register_script("return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])")
        assert script(keys=["strata:{t1:s1}:session", "strata:{t1:s1}:profile"]) == b"ab"
        a, b = "strata:{t1:s1}:session", "strata:{t2:s9}:session"
        assert rc.keyslot(a) != rc.keyslot(b)
        rc.set(b, "c")
        with pytest.raises((redis.RedisError, redis.exceptions.RedisClusterException), match="(?i)slot"):
            script(keys=[a, b])
        node = fresh_cluster.node_for_key(a)
        with node.client() as c, pytest.raises(redis.ResponseError, match="same slot"):
            c.execute_command("MSET", a, "x", b, "y")
    finally:
        rc.close()


def test_asyncio_cluster_client(fresh_cluster) -> None:
    async def go() -> list:
        rc = AsyncRedisCluster(host=fresh_cluster.seed.host, port=fresh_cluster.seed.port)
        try:
            await asyncio.gather(*(rc.hset(f"strata:{{t:{i}}}:session", mapping={"v": i}) for i in range(100)))
            return await asyncio.gather(*(rc.hget(f"strata:{{t:{i}}}:session", "v") for i in range(100)))
        finally:
            await rc.aclose()

    assert [int(v) for v in asyncio.run(go())] == list(range(100))


def test_kill_9_of_a_master_promotes_its_replica_and_keeps_acknowledged_writes(fresh_cluster, record_property) -> None:
    cluster = fresh_cluster
    rc: RedisCluster = cluster.client()
    try:
        tag = "{failover}"
        victim = cluster.node_for_key(f"strata:{tag}:0")
        (replica,) = cluster.replicas_of(victim)
        for i in range(500):
            rc.set(f"strata:{tag}:{i}", i)
        with victim.client() as c:
            assert c.execute_command("WAIT", 1, 5000) == 1        # the replica acknowledged every write

        t0 = time.monotonic()
        cluster.kill(victim)
        promoted_s = cluster.wait_until(
            lambda: cluster.node_for_key(f"strata:{tag}:0") is replica, 30, "the replica to take the slots over")
        errors = []
        while True:                      # the same client object, never recreated
            try:
                rc.set(f"strata:{tag}:new", "after")
                break
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError) as exc:
                errors.append(type(exc).__name__)
                assert time.monotonic() - t0 < 60, f"client never recovered: {errors[-5:]}"
                time.sleep(0.05)
        client_s = time.monotonic() - t0
        record_property("failover_promoted_s", round(promoted_s, 2))
        record_property("failover_client_write_s", round(client_s, 2))
        print(f"\nfailover: replica promoted {promoted_s:.2f} s after kill -9, first client write "
              f"{client_s:.2f} s after it ({len(errors)} errors meanwhile; node timeout "
              f"{cluster.node_timeout_ms} ms)")

        assert [int(rc.get(f"strata:{tag}:{i}")) for i in range(500)] == list(range(500))    # 0 lost
        assert rc.get(f"strata:{tag}:new") == b"after"
        for node in cluster.nodes:
            if node.running:
                assert node.info()["cluster_state"] == "ok"

        cluster.heal()                    # the old master comes back as the new master's replica
        topo = cluster.topology()
        assert topo[victim.node_id]["role"] == "replica"
        assert topo[victim.node_id]["master_id"] == replica.node_id
    finally:
        rc.close()
