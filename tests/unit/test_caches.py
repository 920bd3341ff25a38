"""PoP-local state: the LRU+TTL cache, bandit-count parsing and session decoding."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from strata.edge.bandit_cache import BanditCounts
from strata.edge.caches import TTLCache
from strata.edge.session_client import RedisSessionStore, SessionStore, make_store
from strata.shared.errors import ConfigError
from strata.shared.online_store.codecs import decode_session, parse_counts
from strata.shared.ranking.features import EMBED_DIM


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---- TTLCache ----------------------------------------------------------------------------------------------

def test_get_fresh_then_expired(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=2.0, clock=clock)
    c.put("a", 1)
    clock.now += 2.0
    assert c.get("a") == 1          # age == ttl is still fresh
    clock.now += 0.001
    assert c.get("a") is None       # age > ttl: dropped
    assert len(c) == 0
    assert (c.hits, c.misses) == (1, 1)


def test_put_refreshes_timestamp(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=1.0, clock=clock)
    c.put("a", 1)
    clock.now += 0.9
    c.put("a", 2)
    clock.now += 0.9
    assert c.get("a") == 2


def test_lru_eviction_order(clock: FakeClock) -> None:
    c = TTLCache(3, ttl=100.0, clock=clock)
    for key in "abc":
        c.put(key, key.upper())
    assert c.get("a") == "A"        # a becomes most recent; b is now least recent
    c.put("d", "D")
    assert len(c) == 3
    assert c.get("b") is None
    assert [c.get(k) for k in "acd"] == ["A", "C", "D"]
    c.put("e", "E")                 # a is least recent again after the reads above
    assert c.get("a") is None
    assert c.get("c") == "C"


def test_get_entry_refreshes_recency(clock: FakeClock) -> None:
    c = TTLCache(2, ttl=100.0, clock=clock)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get_entry("a") == (0.0, 1)
    c.put("c", 3)
    assert c.get_entry("b") is None
    assert c.get_entry("a") is not None


def test_get_entry_returns_age_regardless_of_ttl_without_counting(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=1.0, clock=clock)
    c.put("s", "vec")
    clock.now += 0.25
    assert c.get_entry("s") == (0.25, "vec")
    clock.now += 9.75
    assert c.get_entry("s") == (10.0, "vec")    # stale but still served for revalidation
    assert c.get_entry("missing") is None
    assert (c.hits, c.misses) == (0, 0)


def test_hits_misses_ratio(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=5.0, clock=clock)
    assert c.hit_ratio == 0.0
    c.put("a", 1)
    c.get("a")
    c.get("a")
    c.get("a")
    c.get("x")
    assert (c.hits, c.misses) == (3, 1)
    assert c.hit_ratio == 0.75


def test_falsy_values_are_hits(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=5.0, clock=clock)
    c.put("zero", 0)
    assert c.get("zero") == 0 and c.hits == 1


def test_maxsize_zero_disables(clock: FakeClock) -> None:
    c = TTLCache(0, ttl=5.0, clock=clock)
    c.put("a", 1)
    assert len(c) == 0
    assert c.get("a") is None
    assert c.misses == 1


def test_clear(clock: FakeClock) -> None:
    c = TTLCache(10, ttl=5.0, clock=clock)
    c.put(("t", "s", 1), 1)
    c.clear()
    assert len(c) == 0 and c.get(("t", "s", 1)) is None


def test_default_clock_is_monotonic() -> None:
    c = TTLCache(2, ttl=60.0)
    c.put("a", 1)
    age, value = c.get_entry("a")
    assert value == 1 and 0.0 <= age < 60.0


# ---- parse_counts ------------------------------------------------------------------------------------------

INDEX = {"A": 0, "B": 1, "C": 2}


def test_parse_counts_aligned_arrays() -> None:
    raw = {b"c:A": b"3", b"n:A": b"10", b"n:C": b"7", b"c:C": b"0", b"n:B": b"2.5"}
    sc = parse_counts(raw, INDEX, 3)
    assert sc.clicks.tolist() == [3.0, 0.0, 0.0]
    assert sc.imps.tolist() == [10.0, 2.5, 7.0]
    assert sc.clicks.dtype == np.float64 and sc.imps.dtype == np.float64
    assert sc.extra == {}


def test_parse_counts_accepts_str_keys() -> None:
    sc = parse_counts({"c:B": "4", "n:B": "9"}, INDEX, 3)
    assert sc.clicks.tolist() == [0.0, 4.0, 0.0] and sc.imps.tolist() == [0.0, 9.0, 0.0]


def test_parse_counts_unknown_ids_go_to_extra() -> None:
    raw = {b"c:NEW": b"2", b"n:NEW": b"11", b"e:NEW": b"1500000", b"n:ONLY-IMPS": b"5", b"c:ONLY-CLICKS": b"1",
           b"c:A": b"1"}
    sc = parse_counts(raw, INDEX, 3)
    assert sc.extra == {"NEW": (2.0, 11.0, 1.5), "ONLY-IMPS": (0.0, 5.0, 0.0), "ONLY-CLICKS": (1.0, 0.0, 0.0)}
    assert sc.clicks.tolist() == [1.0, 0.0, 0.0]


def test_parse_counts_reads_expected_clicks_in_millionths() -> None:
    sc = parse_counts({b"e:B": b"2250000", b"n:B": b"9", b"e:C": b"-5"}, INDEX, 3)
    assert sc.expected.tolist() == [0.0, 2.25, 0.0]           # a negative value is malformed: skipped


def test_parse_counts_item_ids_may_contain_colons() -> None:
    sc = parse_counts({b"n:SKU:1": b"4"}, {"SKU:1": 0}, 1)
    assert sc.imps.tolist() == [4.0]


def test_parse_counts_skips_malformed_fields() -> None:
    raw = {
        b"c:A": b"two",      # not a number
        b"x:A": b"5",        # unknown kind
        b"c:": b"5",         # no item id
        b"nA": b"5",         # no separator
        b"n:B": b"-3",       # negative
        b"n:C": b"6",        # the one good field
    }
    sc = parse_counts(raw, INDEX, 3)
    assert sc.clicks.tolist() == [0.0, 0.0, 0.0]
    assert sc.imps.tolist() == [0.0, 0.0, 6.0]
    assert sc.extra == {}


def test_parse_counts_skips_non_finite_values() -> None:
    # "nan"/"inf" parse as floats but are not counts; a NaN reaching posterior() gives NaN draws and means
    raw = {b"c:A": b"nan", b"n:A": b"inf", b"n:B": b"4", b"c:NEW": b"nan"}
    sc = parse_counts(raw, INDEX, 3)
    assert sc.clicks.tolist() == [0.0, 0.0, 0.0]
    assert sc.imps.tolist() == [0.0, 4.0, 0.0]
    assert sc.extra == {}


def test_parse_counts_skips_undecodable_field_names() -> None:
    # one non-UTF-8 field must not fail the whole refresh (the refresher would stop at this slot every cycle)
    sc = parse_counts({b"c:\xff\xfe": b"1", b"n:A": b"3"}, INDEX, 3)
    assert sc.imps.tolist() == [3.0, 0.0, 0.0]


def test_parse_counts_empty() -> None:
    sc = parse_counts({}, INDEX, 3)
    assert sc.clicks.tolist() == [0.0] * 3 and sc.imps.tolist() == [0.0] * 3 and sc.extra == {}


def test_bandit_counts_pinned_slots_and_bounded_lru() -> None:
    # issue 6 replaced first-come registration (junk slots could fill it for good) with configured
    # slots that are never evicted plus an LRU of other recently requested slots
    bc = BanditCounts(3, pinned=[("t", "home")], recent_max=2)
    zero = bc.get("t", "home")
    assert zero.clicks.tolist() == [0.0] * 3
    bc.get("t", "pdp")
    bc.get("t", "cart")
    bc.get("t", "junk-1")             # over the bound: the least recently used other slot goes
    assert set(bc.tracked()) == {("t", "home"), ("t", "cart"), ("t", "junk-1")}
    for i in range(100):              # junk cannot grow memory or push the configured slot out
        bc.get("t", f"junk-{i}")
    assert len(bc.tracked()) == 3 and ("t", "home") in bc.tracked()
    filled = parse_counts({b"c:A": b"1"}, INDEX, 3)
    bc.set("t", "home", filled)
    assert bc.get("t", "home") is filled
    bc.set("t", "evicted", filled)    # a slot no longer tracked is not re-added by a late refresh
    assert ("t", "evicted") not in bc.tracked()


def test_parse_counts_with_the_compiled_item_index() -> None:
    from strata.shared.ranking.row_map import ItemIndex

    raw = {b"c:A": b"3", b"n:A": b"10", b"n:C": b"7", b"c:NEW": b"2", b"n:B": b"x"}
    sc = parse_counts(raw, ItemIndex(["A", "B", "C"]), 3)
    assert sc.clicks.tolist() == [3.0, 0.0, 0.0] and sc.imps.tolist() == [10.0, 0.0, 7.0]
    assert sc.extra == {"NEW": (2.0, 0.0, 0.0)}


# ---- decode_session / make_store ---------------------------------------------------------------------------

def test_decode_session_right_size() -> None:
    vec = np.linspace(-1, 1, EMBED_DIM, dtype=np.float32)
    st = decode_session(vec.astype("<f4").tobytes(), b"1700000000123")
    assert st.vec is not None and st.vec.dtype == np.float32 and st.vec.shape == (EMBED_DIM,)
    np.testing.assert_array_equal(st.vec, vec)
    assert st.updated_ms == 1_700_000_000_123
    st.vec[0] = 5.0   # a writable copy, not a view on the store's bytes


@pytest.mark.parametrize("size", [0, 4, EMBED_DIM * 4 - 1, EMBED_DIM * 4 + 4, EMBED_DIM * 8])
def test_decode_session_wrong_size_is_none(size: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="strata.shared.online_store.codecs"):
        st = decode_session(b"\x00" * size, b"5")
    assert st.vec is None and st.updated_ms == 5
    assert f"session vector has {size} bytes, expected {EMBED_DIM * 4}; ignored" in caplog.text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decode_session_non_finite_is_none(bad: float) -> None:
    vec = np.ones(EMBED_DIM, dtype=np.float32)
    vec[3] = bad
    assert decode_session(vec.tobytes(), None).vec is None


def test_decode_session_all_zero_is_no_vector() -> None:
    """A vector pointing nowhere carries no taste: every tier reads it as no session vector (one rule)."""
    assert decode_session(np.zeros(EMBED_DIM, dtype="<f4").tobytes(), b"5").vec is None


@pytest.mark.parametrize(("raw", "expected"), [(None, None), (b"abc", None), (b"42", 42), ("17", 17)])
def test_decode_session_updated(raw: bytes | str | None, expected: int | None) -> None:
    st = decode_session(None, raw)
    assert st.vec is None and st.updated_ms == expected


@pytest.mark.parametrize("url", ["none", "NONE", " None ", ""])
def test_make_store_none_is_not_configured(url: str) -> None:
    store = make_store(url, 0.003)
    assert type(store) is SessionStore
    assert store.configured is False
    state = asyncio.run(store.get_session("t", "s"))
    assert (state.vec, state.updated_ms) == (None, None)
    assert asyncio.run(store.get_bandit_counts_many([("t", "home")])) == [{}]
    assert asyncio.run(store.ping()) is False


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://x", "redis"])
def test_make_store_bad_scheme_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as ei:
        make_store(url, 0.003)
    assert ei.value.field == "edge.store.url"
    assert ei.value.reason == f"store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, valkey+cluster:// or 'none', got {url!r}"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "valkey://127.0.0.1:1/0"])
def test_make_store_redis_url_builds_a_configured_store(url: str) -> None:
    store = make_store(url, 0.003)   # no connection is made until the first call
    assert isinstance(store, RedisSessionStore) and store.configured is True


@pytest.mark.parametrize("exact_key", [(b"{}", b"application/json", ("v1",), None),
                                       (b"{}", b"application/json", ("v1",), "acme"),
                                       (b"{}", b"application/json", ("v1",))])
def test_an_invalidated_session_loses_its_exact_and_semantic_answers(exact_key: tuple) -> None:
    """Whatever the exact key holds (with auth it names the caller's tenant), the session's invalidation drops it:
    a stale answer served from the exact cache would hide the processor's fresh session vector."""
    from strata.edge.response_cache import ResponseCache
    from strata.shared.config import CacheSettings

    cache = ResponseCache(CacheSettings())
    semantic = ("default", "s-1", "home", None, None, None, 0, False, None, 10, False, None, ("v1",))
    other = ("default", "s-2", *semantic[2:])
    cache.remember(semantic, exact_key, "answer")
    cache.remember(other, None, "other answer")
    assert cache.drop_session("default", "s-1") == 2
    assert cache.semantic.get(semantic) is None and cache.exact.get(exact_key) is None
    assert cache.semantic.get(other) == "other answer"
