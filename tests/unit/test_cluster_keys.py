"""Cluster placement: every key's hash tag (``shared.keys``) and the split of a processor plan by node
(``streaming.cluster_store.split_row``)."""

from __future__ import annotations

import numpy as np
from redis.crc import key_slot

from strata.shared import keys as K
from strata.streaming.cluster_store import split_row
from strata.streaming.effects import Plan, SessionWrite
from strata.streaming.store import write_row


def _slot(key: str) -> int:
    return key_slot(key.encode())


def test_what_one_script_touches_together_shares_a_slot() -> None:
    assert _slot(K.impression_key("t", "i9")) == _slot(K.pending_clicks_key("t", "i9"))      # the click join
    assert _slot(K.profile_key("t", "u")) == _slot(K.purchases_key("t", "u"))
    stream = {_slot(k) for k in (K.WATERMARK_KEY, K.LOG_IDS_KEY, K.LOG_RESETS_KEY, K.CART_DEADLINES_KEY,
                                 K.TRIGGER_OUTBOX_KEY, K.JOURNAL_KEY, K.PENDING_KEY, K.JOURNAL_SEQ_KEY,
                                 K.WRITES_KEY, K.seen_bucket_key(7))}
    assert len(stream) == 1


def test_sessions_slots_and_impressions_of_one_tenant_spread_over_slots() -> None:
    for build in (K.session_key, K.bandit_key, K.impression_key, K.profile_key):
        assert len({_slot(build("acme", f"x{i}")) for i in range(200)}) > 150, build.__name__


def test_done_keys_land_on_their_slot() -> None:
    assert all(_slot(K.done_key(s)) == s for s in (0, 1, 5461, 10923, 16383))


def test_a_plan_splits_by_node_with_every_write_once() -> None:
    sess = [K.session_key("t", f"s{i}") for i in range(20)]
    plan = Plan({"e:0": 3}, {"e:0": 9}, ["1:ta"], [("HSET", K.profile_key("t", "u"), "stated", "{}"),
                                                   ("RPUSH", K.TRIGGER_OUTBOX_KEY, "m")])
    plan.incr = {(K.bandit_key("t", "home"), "n:a"): 2, (K.profile_key("t", "u"), "v:1"): 1}
    plan.lt = {K.profile_key("t", "u"): np.ones(2)}
    plan.session_writes = [SessionWrite(k, b"\0" * 16, 1, 1, None) for k in sess]
    plan.bandits = {K.bandit_key("t", "home"): None}
    row = write_row(plan, 1000)

    def node_of(key) -> str:          # three "nodes" by slot range, as a 3-master cluster splits them
        s = key_slot(key.encode() if isinstance(key, str) else key)
        return "a" if s < 5461 else "b" if s < 10923 else "c"

    groups = split_row(row, node_of)
    got_sessions = [k for sub, _ in groups.values() for k in sub[7][::5]]
    assert sorted(got_sessions) == sorted(sess)
    for name, (sub, slots) in groups.items():
        assert {node_of(k) for k in sub[7][::5]} <= {name}
        assert all(node_of(op[1]) == name for op in sub[4])
        assert slots and all(node_of(K.done_key(s)) == name for s in slots)
        assert sub[1] == [] and sub[10] == []      # event ids and watermarks are the journal's, not a node's
    assert sum(len(sub[4]) for sub, _ in groups.values()) == 2
    assert sum(len(sub[5]) for sub, _ in groups.values()) == 6
