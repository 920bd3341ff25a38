"""The processor's plan (``streaming.effects``) on in-memory snapshots: what is skipped, what is counted once,
what the click->impression join and the triggers write. The store side is tested on real Valkey."""

from __future__ import annotations

import numpy as np
import orjson

from strata.shared import keys as K
from strata.shared.config import load_settings
from strata.shared.contracts.api import parse_event
from strata.streaming.catalog import Catalog
from strata.streaming.effects import (
    AFFINITY_SCALE,
    DAY_MS,
    Impression,
    Planner,
    Record,
    Snapshot,
    profile_summary,
    reads_for,
)

CFG = load_settings(streaming={"click_join_window_s": 10, "abandoned_cart_s": 60}).streaming
VECS = np.eye(16, dtype=np.float32)[:4]
CATALOG = Catalog("1.0.0", {f"i{k}": k for k in range(4)}, VECS, ["shoes", "shoes", "hats", "toys"],
                  ["A", "B", "A", "C"])
T0 = 1_700_000_000_000


def _rec(offset: int, etype: str, eid: str | None = None, partition: int = 0, **kw) -> Record:
    raw = {"event_id": eid or f"e{offset}", "type": etype, "user_id": "u", "session_id": "s", "ts": T0 + offset,
           "channel": "web", **kw}
    return Record("events", partition, offset, parse_event(raw))


def _imp(offset: int, imp: str = "imp-1", items=("i0", "i1"), **kw) -> Record:
    n = len(items)
    return _rec(offset, "impression", impression_id=imp, items=list(items), alpha=[1.0] * n, beta=[1.0] * n,
                tier="edge", model_version="1", **kw)


def _empty(records: list[Record], **over) -> Snapshot:
    r = reads_for(records)
    snap = Snapshot({f: -1 for f in r.wm_fields}, set(), {k: (None, 0) for k in r.session_keys},
                    {k: None for k in r.impression_keys}, {k: set() for k in r.pending_keys})
    for k, v in over.items():
        setattr(snap, k, v)
    return snap


def _incr(plan) -> dict:
    return {kf: n for kf, n in plan.incr.items() if n}


def test_offsets_at_or_below_the_watermark_are_skipped() -> None:
    recs = [_rec(o, "view", item_id="i0") for o in range(5)]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs, watermarks={"events:0": 2}), T0)
    assert (plan.replayed, len(plan.applied)) == (3, 2)
    assert plan.wm_expected == {"events:0": 2} and plan.wm_new == {"events:0": 4}
    assert [e.event_id for e in plan.applied] == ["e3", "e4"]


def test_event_ids_seen_before_or_twice_in_a_batch_count_once() -> None:
    recs = [_rec(0, "view", "a", item_id="i0"), _rec(1, "view", "a", item_id="i0"), _rec(2, "view", "b", item_id="i1")]
    snap = _empty(recs, seen={K.seen_member("default", "b")})
    plan = Planner(CFG, CATALOG).plan(recs, snap, T0)
    assert (len(plan.applied), plan.duplicates) == (1, 2)
    assert plan.seen_new == [K.seen_member("default", "a")]
    assert _incr(plan)[(K.profile_key("default", "u"), f"v:{T0 // DAY_MS}")] == 1


def test_impression_counts_items_once_and_a_second_log_of_it_is_ignored() -> None:
    recs = [_imp(0, items=("i0", "i1", "i0")), _imp(1, items=("i0", "i1"))]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    bk = K.bandit_key("default", "home")
    assert {f: n for (k, f), n in _incr(plan).items() if k == bk} == {"n:i0": 1, "n:i1": 1}
    again = [_imp(5, items=("i0", "i1"))]          # the same impression id logged again in a later batch
    assert K.impression_key("default", "imp-1") in reads_for(again).impression_keys
    stored = {K.impression_key("default", "imp-1"): Impression("home", T0, ["i0", "i1"], set())}
    plan = Planner(CFG, CATALOG).plan(again, _empty(again, impressions=stored), T0)
    assert not any(k == bk for (k, _) in _incr(plan))


def test_an_impressions_prior_adds_the_expected_clicks_once_per_item_in_millionths() -> None:
    """The scorer's p behind each shown item, summed per slot and item (the bandit's lift reads clicks over it);
    a repeated item counts at its first position, like its impression; a second log of the id adds nothing."""
    recs = [_imp(0, items=("i0", "i1", "i0"), prior=[0.25, 0.0333333, 0.9]), _imp(1, items=("i0", "i1"),
                                                                                  prior=[0.5, 0.5]),
            _imp(2, "imp-2", items=("i0", "i2"), prior=[0.125, 0.0])]
    flat = load_settings(streaming={"bandit_position_weights": [1.0]}).streaming
    plan = Planner(flat, CATALOG).plan(recs, _empty(recs), T0)
    bk = K.bandit_key("default", "home")
    assert {f: n for (k, f), n in _incr(plan).items() if k == bk} == {
        "n:i0": 2, "n:i1": 1, "n:i2": 1, "e:i0": 375_000, "e:i1": 33_333}
    plain = [_imp(0, "imp-3")]                     # no prior: impressions only
    plan = Planner(CFG, CATALOG).plan(plain, _empty(plain), T0)
    assert {f for (k, f) in _incr(plan) if k == bk} == {"n:i0", "n:i1"}


def test_expected_clicks_are_discounted_by_the_position_shown() -> None:
    """Shoppers look less often at lower positions: an item's expected clicks are its p times the chance its
    position is looked at (default 1/log2(i + 1), the DCG discount), so an item the ranking keeps low is not
    read as worse than the scorer thought (which would keep it low: a rich-get-richer loop)."""
    recs = [_imp(0, items=("i0", "i1", "i2", "i3"), prior=[0.5, 0.5, 0.5, 0.5])]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    bk = K.bandit_key("default", "home")
    got = {f: n for (k, f), n in _incr(plan).items() if k == bk and f.startswith("e:")}
    assert got == {"e:i0": 500_000, "e:i1": round(0.5 / np.log2(3) * 1e6), "e:i2": 250_000,
                   "e:i3": round(0.5 / np.log2(5) * 1e6)}
    custom = load_settings(streaming={"bandit_position_weights": [1.0, 0.5]}).streaming
    plan = Planner(custom, CATALOG).plan(recs, _empty(recs), T0)
    got = {f: n for (k, f), n in _incr(plan).items() if k == bk and f.startswith("e:")}
    assert got == {"e:i0": 500_000, "e:i1": 250_000, "e:i2": 250_000, "e:i3": 250_000}   # the last holds


def test_position_weights_are_probabilities() -> None:
    import pytest

    from strata.shared.errors import ConfigError

    for bad in ([], [0.0], [1.0, 1.5], [-0.2]):
        with pytest.raises(ConfigError, match="bandit_position_weights"):
            load_settings(streaming={"bandit_position_weights": bad})


def test_click_joins_its_impression_once_within_the_window() -> None:
    recs = [_imp(0, slot="pdp"), _rec(1, "click", item_id="i1", impression_id="imp-1"),
            _rec(2, "click", item_id="i1", impression_id="imp-1"),           # same item again
            _rec(3, "click", item_id="i3", impression_id="imp-1")]           # not shown there
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    bk = K.bandit_key("default", "pdp")
    assert {f: n for (k, f), n in _incr(plan).items() if k == bk} == {"n:i0": 1, "n:i1": 1, "c:i1": 1}


def test_click_on_a_stored_impression_respects_clicked_and_window() -> None:
    ikey = K.impression_key("default", "imp-1")
    recs = [_rec(1, "click", item_id="i0", impression_id="imp-1"),
            _rec(2, "click", item_id="i1", impression_id="imp-1")]
    imp = Impression("home", T0 - 20_000, ["i0", "i1"], {"i1"})            # 20 s old, window 10 s
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs, impressions={ikey: imp}), T0)
    assert not any(f.startswith("c:") for (_, f) in _incr(plan))
    imp = Impression("home", T0, ["i0", "i1"], {"i1"})
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs, impressions={ikey: imp}), T0)
    assert {f for (_, f) in _incr(plan) if f.startswith("c:")} == {"c:i0"}


def test_click_before_its_impression_waits_and_is_joined_later() -> None:
    click = [_rec(0, "click", item_id="i1", impression_id="imp-9")]
    plan = Planner(CFG, CATALOG).plan(click, _empty(click), T0)
    assert ("SADD", K.pending_clicks_key("default", "imp-9"), "i1") in plan.ops
    assert not any(f.startswith("c:") for (_, f) in _incr(plan))
    later = [_imp(1, imp="imp-9")]
    pkey = K.pending_clicks_key("default", "imp-9")
    plan = Planner(CFG, CATALOG).plan(later, _empty(later, pending={pkey: {"i1"}}), T0)
    assert _incr(plan)[(K.bandit_key("default", "home"), "c:i1")] == 1 and ("DEL", pkey) in plan.ops


def test_invalid_records_are_dead_lettered_once() -> None:
    bad = Record("events", 0, 7, None, b"\x00", ("body", "undecodable"))
    plan = Planner(CFG, CATALOG).plan([bad], _empty([bad]), T0)
    assert plan.dead == [bad] and plan.wm_new == {"events:0": 7}
    plan = Planner(CFG, CATALOG).plan([bad], _empty([bad], watermarks={"events:0": 7}), T0)
    assert plan.dead == [] and plan.replayed == 1


def test_session_write_and_invalidation_per_session() -> None:
    recs = [_rec(0, "view", item_id="i0"), _rec(1, "click", item_id="i1"), _rec(2, "search", query="x")]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0 + 5)
    (w,) = plan.session_writes
    assert w.key == K.session_key("default", "s") and w.events == 2 and w.ref_ms == T0 + 1
    assert plan.updated_ms == T0 + 5
    assert np.frombuffer(w.vec, "<f4").shape == (16,)
    assert plan.sessions == [("default", "s")]       # published once for the batch


def test_cart_deadline_and_post_purchase_outbox() -> None:
    recs = [_rec(0, "add_to_cart", item_id="i2"), _rec(1, "purchase", item_id="i2", quantity=3, price=2.5)]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    member = '["default","s","u"]'            # a JSON array: no separator an id could break
    assert ("ZADD", K.CART_DEADLINES_KEY, "GT", T0 + 60_000, member) in plan.ops
    assert ("ZREM", K.CART_DEADLINES_KEY, member) in plan.ops
    out = [orjson.loads(op[2]) for op in plan.ops if op[0] == "RPUSH"]
    assert out == [{"trigger_id": "post_purchase:default:e1", "type": "post_purchase", "tenant": "default",
                    "user_id": "u", "session_id": "s", "ts": T0 + 1, "item_id": "i2", "quantity": 3, "price": 2.5}]
    inc = _incr(plan)
    pk = K.profile_key("default", "u")
    assert plan.bounded == [(pk, "revenue_cents", 750)] and inc[(pk, "orders")] == 1   # overflow-checked first
    assert inc[(pk, "cat:hats")] == (3 + 5) * AFFINITY_SCALE and inc[(pk, "brand:A")] == 8 * AFFINITY_SCALE
    assert list(plan.lt) == [pk]
    assert plan.lt[pk].tolist() == (VECS[2] * (3.0 + 4.0)).tolist()   # cart 3 + purchase 4


def test_profile_summary_windows_and_average_order() -> None:
    today = T0 // DAY_MS
    raw = {f"v:{today}".encode(): b"2", f"v:{today - 8}".encode(): b"5", f"v:{today - 40}".encode(): b"9",
           f"p:{today - 1}".encode(): b"1", b"orders": b"4", b"revenue_cents": b"1000", b"cat:hats": b"300",
           b"consent:marketing": b"0", b"lt": np.array([3.0, 4.0], dtype="<f8").tobytes()}
    s = profile_summary(raw, T0)
    assert (s["views_7d"], s["views_30d"], s["purchases_7d"], s["purchases_30d"]) == (2, 7, 1, 1)
    assert s["avg_order_value"] == 2.5 and s["categories"] == {"hats": 3} and s["consent"] == {"marketing": False}
    assert s["long_term"] == [0.6, 0.8]


def test_batched_fold_is_bit_equal_to_the_scalar_rule() -> None:
    """The planner folds a batch's moves per session with numpy; every session's accumulator, reference time
    and vector must equal, bit for bit, ``apply_event`` applied one event at a time in log order, whatever the
    batch: several events per session, late events, sessions with and without stored state."""
    from strata.shared.ranking.session_update import SessionAcc, apply_event, session_vec

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(50, 16)).astype(np.float32)
    catalog = Catalog("1.0.0", {f"i{k}": k for k in range(50)}, vecs, ["c"] * 50, ["b"] * 50)
    types = ["view", "click", "add_to_cart", "purchase", "search"]
    recs = []
    for o in range(600):
        t = types[int(rng.integers(len(types)))]
        kw = {"quantity": 1, "price": 1.0} if t == "purchase" else {}
        kw.update({"query": "q"} if t == "search" else {"item_id": f"i{int(rng.integers(50))}"})
        raw = {"event_id": f"e{o}", "type": t, "user_id": "u", "session_id": f"s{int(rng.integers(30))}",
               "ts": T0 + int(rng.integers(-3_600_000, 3_600_000)), "channel": "web", **kw}
        recs.append(Record("events", 0, o, parse_event(raw)))
    stored = {K.session_key("default", f"s{k}"): (SessionAcc(rng.normal(size=16), T0 + k * 1000), 3)
              for k in range(0, 30, 2)}                          # half the sessions have state already
    snap = _empty(recs)
    snap.sessions.update(stored)
    plan = Planner(CFG, catalog).plan(recs, snap, T0 + 3_600_000)     # no event time ahead of the clock
    expect: dict[str, tuple[SessionAcc | None, int]] = {}
    for rec in recs:
        ev = rec.event
        w = CFG.session.weight(ev.type)
        if ev.item_id is None or w == 0.0:
            continue
        key = K.session_key("default", ev.session_id)
        state, n = expect.get(key, stored.get(key, (None, 0)))
        expect[key] = (apply_event(state, vecs[int(ev.item_id[1:])], w, ev.ts_ms, CFG.session), n + 1)
    assert {w.key for w in plan.session_writes} == set(expect)
    for w in plan.session_writes:
        state, n = expect[w.key]
        vec = session_vec(state)
        assert (w.acc, w.ref_ms, w.events) == (state.acc.astype("<f8").tobytes(), state.ref_ms, n), w.key
        assert w.vec == (vec.astype("<f4").tobytes() if vec is not None else None), w.key


def test_session_vecs_gives_the_same_bits_alone_and_in_a_batch() -> None:
    from strata.shared.ranking.session_update import session_vecs

    accs = np.random.default_rng(5).normal(size=(257, 16)) * 1e3
    accs[7] = 0.0
    batch, ok = session_vecs(accs)
    for i in range(accs.shape[0]):
        one, ok1 = session_vecs(accs[i:i + 1])
        assert ok1[0] == ok[i] and one[0].tobytes() == batch[i].tobytes()
    assert not ok[7]


def test_a_batch_planned_on_an_overlaid_snapshot_equals_one_big_batch() -> None:
    """The processor plans batch N+1 while N's write is in flight, on a snapshot overlaid with N's effects
    (``effects.overlay``). Whether the read ran before N's write (stale) or after, the result must be what
    planning N and N+1 as one batch gives: same sessions (bit for bit), counts, impressions and clicks."""
    from strata.streaming.effects import overlay

    rng = np.random.default_rng(9)
    recs = []
    for o in range(300):
        kind = int(rng.integers(4))
        sid = f"s{int(rng.integers(8))}"
        if kind == 0:
            recs.append(_rec(o, "impression", impression_id=f"imp{o % 7}", items=["i0", "i1"], alpha=[1.0, 1.0],
                             beta=[1.0, 1.0], tier="edge", model_version="1", session_id=sid))
        elif kind == 1:
            recs.append(_rec(o, "click", item_id=f"i{int(rng.integers(2))}", impression_id=f"imp{int(rng.integers(7))}",
                             session_id=sid))
        else:
            recs.append(_rec(o, "view", f"e{int(rng.integers(250))}", item_id=f"i{int(rng.integers(4))}",
                             session_id=sid))
    for cut in (1, 50, 150, 299):
        whole = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
        first = Planner(CFG, CATALOG).plan(recs[:cut], _empty(recs[:cut]), T0)
        stale = _empty(recs[cut:])                      # read before the first write landed
        overlay(stale, first)
        second = Planner(CFG, CATALOG).plan(recs[cut:], stale, T0)
        assert second.wm_expected == first.wm_new
        assert len(first.applied) + len(second.applied) == len(whole.applied)
        assert first.duplicates + second.duplicates == whole.duplicates
        merged = dict(first.incr)
        for kf, n in second.incr.items():
            merged[kf] = merged.get(kf, 0) + n
        assert {k: n for k, n in merged.items() if n} == {k: n for k, n in whole.incr.items() if n}
        sess = {**first.after_sessions, **second.after_sessions}
        assert sess.keys() == whole.after_sessions.keys()
        for k, (state, n) in whole.after_sessions.items():
            assert (sess[k][0].acc.tobytes(), sess[k][0].ref_ms, sess[k][1]) == (state.acc.tobytes(), state.ref_ms, n)
        imps = {**first.after_impressions, **second.after_impressions}
        assert {k: (v.items, v.clicked) for k, v in imps.items()} == \
            {k: (v.items, v.clicked) for k, v in whole.after_impressions.items()}
        assert {**first.after_recent, **second.after_recent} == whole.after_recent


def test_recent_items_are_newest_first_capped_and_equal_to_the_replay() -> None:
    """The session's ``recent`` field (fed to the origin's user/session tower): items of the events that move
    the vector, newest (log order) first, at most 1 KiB; readers take 30 distinct; carried over from the store."""
    from strata.shared.ranking.session_update import MAX_RECENT, RECENT_BYTES, recent_items, replay_recent

    rng = np.random.default_rng(4)
    catalog = Catalog("1.0.0", {f"i{k}": k for k in range(50)}, rng.normal(size=(50, 16)).astype(np.float32),
                      ["c"] * 50, ["b"] * 50)
    types = ["view", "click", "add_to_cart", "search", "remove_from_cart"]
    raws = []
    for o in range(400):
        t = types[int(rng.integers(len(types)))]
        kw = {"query": "q"} if t == "search" else {"item_id": f"i{int(rng.integers(60))}"}   # i50+: unknown
        raws.append({"event_id": f"e{o}", "type": t, "user_id": "u", "session_id": f"s{int(rng.integers(3))}",
                     "ts": T0 + int(rng.integers(-3_600_000, 3_600_000)), "channel": "web", **kw})
    recs = [Record("events", 0, o, parse_event(r)) for o, r in enumerate(raws)]
    whole = Planner(CFG, catalog).plan(recs, _empty(recs), T0)
    for sid in ("s0", "s1", "s2"):
        evs = [r.event for r in recs if r.event.session_id == sid]
        moving = [e.item_id for e in evs if e.item_id is not None and CFG.session.weight(e.type) != 0
                  and e.item_id in catalog.index]
        key = K.session_key("default", sid)
        raw = whole.after_recent[key]
        assert raw == replay_recent(evs, catalog.index.__contains__, CFG.session)
        assert raw.decode().split("\x1f") == moving[::-1][:RECENT_BYTES // 3]   # "iN" + sep; unknown never enter
        assert recent_items(raw) == list(dict.fromkeys(moving[::-1]))[:MAX_RECENT]
        assert next(w for w in whole.session_writes if w.key == key).recent == raw
    # carried over: the stored field continues under the batch's new items; the oldest whole entries go
    key = K.session_key("default", "s")
    two = [_rec(0, "view", item_id="i1"), _rec(1, "click", item_id="i0")]
    old = [f"x{k:03d}" for k in range(300)]                      # 4 bytes + separator each
    plan = Planner(CFG, CATALOG).plan(two, _empty(two, recent={key: "\x1f".join(old).encode()}), T0)
    got = plan.after_recent[key]
    n = (RECENT_BYTES - len("i0\x1fi1")) // 5                       # whole old entries that fit after them
    assert got.decode().split("\x1f") == ["i0", "i1", *old[:n]]
    assert len(got) <= RECENT_BYTES < len(got) + 5                    # cut after the last whole entry
    plan = Planner(CFG, CATALOG).plan(two, _empty(two, recent={key: b"i1\x1fx"}), T0)
    assert recent_items(plan.after_recent[key]) == ["i0", "i1", "x"]


def test_histogram_observe_many_equals_observe_one_by_one() -> None:
    from strata.shared.serving.metrics import Histogram

    values = np.concatenate([np.random.default_rng(2).exponential(0.05, 500), [0.0, 0.001, 0.25, 1.0, 99.0]])
    one, many = Histogram((0.001, 0.01, 0.1, 0.25, 1.0)), Histogram((0.001, 0.01, 0.1, 0.25, 1.0))
    for v in values.tolist():
        one.observe(v)
    many.observe_many(values)
    assert one.counts == many.counts and one.n == many.n and abs(one.total - many.total) < 1e-9


def test_purchases_are_recorded_per_user_newest_kept_and_capped() -> None:
    recs = [_rec(0, "purchase", item_id="i2", quantity=1, price=2.0), _rec(1, "view", item_id="i3")]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    bkey = K.purchases_key("default", "u")
    assert [op for op in plan.ops if op[1] == bkey] == [
        ("ZADD", bkey, "GT", T0, "i2"), ("ZREMRANGEBYRANK", bkey, 0, -(K.MAX_PURCHASES + 1)),
        ("PEXPIRE", bkey, int(CFG.profile_ttl_s * 1000))]          # expires with inactivity, like the profile
    assert bkey.startswith("strata:{default:u:u}") and K.profile_key("default", "u").startswith("strata:{default:u:u}")


def test_a_preference_event_stores_the_latest_statement_for_the_origin() -> None:
    recs = [_rec(0, "preference", categories=["toys"], brands=["Norvik"]),
            _rec(1, "preference", categories=["books"])]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    pk = K.profile_key("default", "u")
    stated = [orjson.loads(op[3]) for op in plan.ops if op[0] == "HSET" and op[1] == pk and op[2] == "stated"]
    assert stated == [{"categories": ["toys"], "brands": ["Norvik"]}, {"categories": ["books"], "brands": []}]


def test_a_session_key_expiry_is_set_when_new_or_due_and_left_alone_otherwise() -> None:
    ttl_ms = int(CFG.session_ttl_s * 1000)
    key = K.session_key("default", "s")
    recs = [_rec(0, "view", item_id="i0")]
    planner = Planner(CFG, CATALOG)
    new = planner.plan(recs, _empty(recs), T0).session_writes[0]
    assert new.expire_at == new.ttl_at == T0 + ttl_ms + ttl_ms // 10      # at least ttl after this write
    fresh = planner.plan(recs, _empty(recs, ttl_at={key: T0 + ttl_ms + 5}), T0).session_writes[0]
    assert (fresh.expire_at, fresh.ttl_at) == (0, T0 + ttl_ms + 5)      # still >= ttl away: no PEXPIREAT
    due = planner.plan(recs, _empty(recs, ttl_at={key: T0 + ttl_ms - 1}), T0).session_writes[0]
    assert due.expire_at == due.ttl_at == T0 + ttl_ms + ttl_ms // 10     # would expire < ttl after it: pushed


def test_the_next_batch_planned_on_an_overlaid_snapshot_keeps_the_new_expiry() -> None:
    from strata.streaming.effects import overlay

    key = K.session_key("default", "s")
    planner = Planner(CFG, CATALOG)
    first = [_rec(0, "view", item_id="i0")]
    plan1 = planner.plan(first, _empty(first), T0)
    second = [_rec(1, "view", item_id="i1")]
    snap = _empty(second)                  # read before plan1's write landed
    overlay(snap, plan1)
    w = planner.plan(second, snap, T0 + 1).session_writes[0]
    assert snap.ttl_at[key] == plan1.session_writes[0].ttl_at
    assert (w.expire_at, w.ttl_at) == (0, plan1.session_writes[0].ttl_at)


def test_an_unknown_event_id_below_the_watermark_is_a_log_reset_not_a_replay() -> None:
    """A record at or below its partition's watermark is skipped as a replay only when its event id was
    applied (or it is older than the dedup window: nothing can be told then); a fresh record with an unknown id
    proves the log restarted below the watermark: it is applied and the watermark moves down to it."""
    recs = [_rec(3, "view", item_id="i0"), _rec(4, "view", eid="applied-before", item_id="i1"),
            _rec(5, "view", item_id="i2")]
    for r in recs:
        r.log_ms = T0
    seen = {"7:defaultapplied-before"}
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs, watermarks={"events:0": 900}, seen=seen), T0 + 1000)
    assert plan.resets == [("events:0", 900, 3)] and plan.wm_new == {"events:0": 5}
    assert [ev.event_id for ev in plan.applied] == ["e3", "e5"] and plan.duplicates == 1   # above the new mark
    old = [_rec(3, "view", item_id="i0")]                 # produced longer ago than the dedup window
    old[0].log_ms = T0 - int(CFG.dedup_ttl_s * 1000)
    plan = Planner(CFG, CATALOG).plan(old, _empty(old, watermarks={"events:0": 900}), T0)
    assert plan.resets == [] and plan.replayed == 1 and plan.applied == []


def test_a_batch_after_a_reset_plans_on_the_moved_watermark() -> None:
    """The next batch is planned on a snapshot overlaid with the previous plan; a reset moved a watermark down,
    and the overlay must follow it down (a watermark only ever rises otherwise)."""
    from strata.streaming.effects import overlay

    first = [_rec(3, "view", item_id="i0")]
    first[0].log_ms = T0
    prev = Planner(CFG, CATALOG).plan(first, _empty(first, watermarks={"events:0": 900}), T0)
    nxt = [_rec(4, "view", item_id="i1")]
    snap = _empty(nxt, watermarks={"events:0": 900})      # read before prev's write landed
    overlay(snap, prev)
    assert snap.watermarks == {"events:0": 3}
    plan = Planner(CFG, CATALOG).plan(nxt, snap, T0)
    assert plan.wm_expected == {"events:0": 3} and plan.resets == [] and len(plan.applied) == 1


def test_the_write_blob_names_every_profile_and_slot_the_plan_writes() -> None:
    """The write script keeps these bounded (decay, top N, expiry): a profile or slot left out would grow."""
    import msgpack

    from strata.streaming.store import write_blob

    recs = [_rec(0, "view", item_id="i0"), _imp(1), _rec(2, "search", query="q", user_id="only-searches"),
            _rec(3, "click", item_id="i1", impression_id="imp-1")]
    plan = Planner(CFG, CATALOG).plan(recs, _empty(recs), T0)
    blob = msgpack.unpackb(write_blob(plan, 3_600_000), raw=True)
    assert blob[12] == [K.profile_key("default", "u").encode()]     # the search alone writes no profile
    assert blob[13] == [K.bandit_key("default", "home").encode()]
