"""The session-vector update rule: exact values on small cases, and order/batching independence."""

from __future__ import annotations

import numpy as np
import pytest

from strata.shared.contracts.api import Event
from strata.shared.ranking.features import EMBED_DIM
from strata.shared.ranking.session_update import (
    SessionAcc,
    SessionRule,
    apply_event,
    decode_state,
    encode_state,
    replay_session,
    session_vec,
)

RULE = SessionRule(half_life_s=10.0)


def _e(i: int) -> np.ndarray:
    v = np.zeros(EMBED_DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def test_first_event_is_its_weighted_vector() -> None:
    s = apply_event(None, _e(0), 2.0, 1000, RULE)
    assert s.ref_ms == 1000 and s.acc[0] == 2.0 and s.acc[1:].sum() == 0
    assert session_vec(s).tolist() == _e(0).tolist()


def test_decay_by_half_life_then_add() -> None:
    s = apply_event(None, _e(0), 1.0, 0, RULE)
    s = apply_event(s, _e(1), 1.0, 10_000, RULE)          # one half-life later
    assert s.ref_ms == 10_000
    assert s.acc[0] == pytest.approx(0.5) and s.acc[1] == 1.0
    v = session_vec(s)
    assert v[1] / v[0] == pytest.approx(2.0)
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)


def test_late_event_is_decayed_to_the_reference_time() -> None:
    s = apply_event(None, _e(0), 1.0, 20_000, RULE)
    s = apply_event(s, _e(1), 4.0, 0, RULE)               # two half-lives late
    assert s.ref_ms == 20_000 and s.acc[1] == pytest.approx(1.0)


def test_zero_vector_item_gives_no_direction() -> None:
    assert session_vec(apply_event(None, np.zeros(EMBED_DIM), 1.0, 0, RULE)) is None
    assert session_vec(None) is None


def test_encode_decode_round_trip_is_exact() -> None:
    rng = np.random.default_rng(1)
    s = SessionAcc(rng.normal(size=EMBED_DIM), 1_764_000_000_123)
    back = decode_state(encode_state(s.acc, s.ref_ms, 7, 1_764_086_400_000))
    assert back.state.ref_ms == s.ref_ms and back.state.acc.tobytes() == s.acc.tobytes()
    assert (back.events, back.ttl_at) == (7, 1_764_086_400_000)
    assert decode_state(encode_state(s.acc.tobytes(), 1, 2, 3)).state.acc.tobytes() == s.acc.tobytes()
    assert decode_state(b"short") == (None, 0, 0) and decode_state(None) == (None, 0, 0)
    other_dim = encode_state(np.zeros(EMBED_DIM + 1), 1, 1, 1)        # a state of another model: ignored
    assert decode_state(other_dim).state is None


def test_replay_skips_unweighted_types_and_unknown_items() -> None:
    vecs = {"A": _e(0), "B": _e(1)}
    evs = [Event(f"e{i}", t, "t", "u", "s", 1000 * i, "web", item_id=item)
           for i, (t, item) in enumerate([("view", "A"), ("remove_from_cart", "B"), ("click", "Z"),
                                          ("add_to_cart", "B")])]
    s = replay_session(evs, vecs.get, RULE)
    expect = apply_event(apply_event(None, _e(0), 1.0, 0, RULE), _e(1), 3.0, 3000, RULE)
    assert s.acc.tobytes() == expect.acc.tobytes() and s.ref_ms == 3000


def test_replay_is_deterministic_to_the_bit() -> None:
    rng = np.random.default_rng(5)
    vecs = {f"i{k}": rng.normal(size=EMBED_DIM).astype(np.float32) for k in range(20)}
    evs = [Event(f"e{i}", str(rng.choice(["view", "click", "add_to_cart", "purchase"])), "t", "u", "s",
                 int(rng.integers(0, 10**7)), "web", item_id=f"i{int(rng.integers(0, 20))}") for i in range(300)]
    a, b = replay_session(evs, vecs.get, RULE), replay_session(list(evs), vecs.get, RULE)
    assert a.acc.tobytes() == b.acc.tobytes() and session_vec(a).tobytes() == session_vec(b).tobytes()


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="half_life_s"):
        SessionRule(half_life_s=0)
    with pytest.raises(ValueError):
        SessionRule(colour=1)   # type: ignore[call-arg]
