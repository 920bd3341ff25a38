"""``streaming.wait_replicas`` on a single Valkey: the batch's write is followed by ``WAIT n timeout`` on its own
connection; too few replicas in time fails the write (retriable, so the processor redoes the batch and commits
nothing), and the redo, a no-op on data, is what finally gets acknowledged once a replica is there."""

from __future__ import annotations

import asyncio
import time

import pytest

from strata.deploy.local import ValkeyProcess
from strata.shared import keys as K
from strata.shared.errors import is_retriable
from strata.streaming.effects import Plan, StoreReads
from strata.streaming.store import ReplicationShortfall, StreamStore


def _plan(snap, wm_new: int) -> Plan:
    plan = Plan(dict(snap.watermarks), {"events:0": wm_new}, [], [], seen_bucket=snap.seen_bucket,
                updated_ms=int(time.time() * 1000))
    plan.incr = {(K.bandit_key("t", "home"), "n:a"): 1} if wm_new > snap.watermarks["events:0"] else {}
    plan.bandits = dict.fromkeys(k for k, _ in plan.incr)
    if wm_new <= snap.watermarks["events:0"]:
        plan.wm_new = {}
    return plan


@pytest.mark.single_valkey("attaches a replica to the one valkey-server (REPLICAOF); on a cluster: "
                          "test_cluster_failover.py")
def test_a_write_without_enough_replicas_fails_then_its_redo_is_acknowledged(fresh_valkey) -> None:
    reads = StoreReads({"events:0"})
    replica = ValkeyProcess()

    async def go() -> None:
        store = StreamStore(fresh_valkey.url, wait_replicas=1, wait_timeout_ms=100)
        try:
            snap = await store.read(reads)
            with pytest.raises(ReplicationShortfall) as ei:      # no replica: the WAIT answers 0
                await store.write(_plan(snap, 5))
            assert is_retriable(ei.value)
            assert await store.watermarks(["events:0"]) == [5]   # on the master, not acknowledged
            replica.start()
            r = replica.client()
            try:
                r.execute_command("REPLICAOF", fresh_valkey.host, fresh_valkey.port)
                deadline = time.monotonic() + 20
                while r.info("replication").get("master_link_status") != "up":
                    assert time.monotonic() < deadline, "the replica never synced"
                    await asyncio.sleep(0.05)
                snap = await store.read(reads)                    # the redo: nothing left to apply ...
                assert snap.watermarks == {"events:0": 5}
                assert await store.write(_plan(snap, 5)) is True  # ... yet its WAIT is acknowledged
                assert r.hget(K.WATERMARK_KEY, "events:0") == b"5"
                assert r.hget(K.bandit_key("t", "home"), "n:a") == b"1"      # applied once
            finally:
                r.close()
        finally:
            await store.close()
            replica.stop()

    asyncio.run(go())
