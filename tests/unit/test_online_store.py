"""shared.online_store: the one client factory and the only decoders of what the processor writes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from strata.shared.errors import ConfigError
from strata.shared.keys import clicks_field, expected_field, imps_field
from strata.shared.online_store import codecs
from strata.shared.online_store.client import check_url, configured, connect, seeds
from strata.shared.ranking.row_map import ItemIndex
from strata.streaming.store import StreamStore

# ---- client --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["none", "NONE", " None ", ""])
def test_the_none_store_opens_nothing(url: str) -> None:
    assert configured(url) is False
    assert connect(url, 0.01) is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memcached://x", "redis"])
def test_a_bad_scheme_is_a_config_error_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError) as ei:
        connect(url, 0.01, field="origin.store.url")
    assert ei.value.field == "origin.store.url"
    assert ei.value.reason == f"store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, valkey+cluster:// or 'none', got {url!r}"


def test_the_stream_processor_refuses_the_none_store_with_a_config_error() -> None:
    """``streaming.store: none`` runs the ingest API alone; the processor's store used to fail with
    ``AttributeError: 'NoneType' object has no attribute 'register_script'`` (found by mypy)."""
    with pytest.raises(ConfigError) as ei:
        StreamStore("none")
    assert ei.value.field == "streaming.store"
    assert ei.value.reason == "needs an online store (a redis:// or valkey:// URL), got 'none'"


def test_valkey_urls_are_read_as_redis_urls() -> None:
    assert check_url("valkey://127.0.0.1:7/0") == "redis://127.0.0.1:7/0"
    assert check_url("rediss://h:1/2") == "rediss://h:1/2"


def test_cluster_urls_open_a_cluster_client_from_any_seed() -> None:
    from redis.asyncio.cluster import RedisCluster

    r = connect("valkey+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001", 0.2)
    assert isinstance(r, RedisCluster)
    assert seeds("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/0") == ([("10.0.0.1", 7000), ("::1", 7001)],
                                                                             "u", "p@ss")
    assert check_url("redis+cluster://h:1") == "redis+cluster://h:1"


@pytest.mark.parametrize("url", ["redis+cluster://h", "valkey+cluster://h:x", "redis+cluster://:1"])
def test_a_cluster_seed_without_host_and_port_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as ei:
        connect(url, 0.01, field="streaming.store")
    assert ei.value.field == "streaming.store"
    assert ei.value.reason.startswith("cluster URL seed must be host:port, got ")


def test_a_client_never_retries_and_bounds_connects_and_reads() -> None:
    async def go() -> tuple:
        r = connect("valkey://127.0.0.1:1/0", 0.003)     # nothing is sent until the first call
        kw = r.connection_pool.connection_kwargs
        try:
            return kw["retry"].get_retries(), kw["socket_timeout"], kw["socket_connect_timeout"], kw["host"]
        finally:
            await r.aclose()

    retries, read_t, connect_t, host = asyncio.run(go())
    assert (retries, read_t, connect_t, host) == (0, 0.05, 0.05, "127.0.0.1")     # at least MIN_TIMEOUT_S


def test_a_subscriber_client_waits_for_messages() -> None:
    async def go() -> tuple:
        r = connect("redis://127.0.0.1:1/0", 1.0, blocking_reads=True)
        try:
            kw = r.connection_pool.connection_kwargs
            return kw["socket_timeout"], kw["socket_connect_timeout"]
        finally:
            await r.aclose()

    assert asyncio.run(go()) == (None, 1.0)


# ---- counts ----------------------------------------------------------------------------------------------------

def test_count_values_read_missing_and_malformed_as_zero() -> None:
    got = codecs.count_values([b"3", None, b"x", b"-1", b"inf", "2.5", b"nan"])
    assert got.tolist() == [3.0, 0.0, 0.0, 0.0, 0.0, 2.5, 0.0]


def test_item_counts_and_slot_counts_give_the_same_evidence() -> None:
    """Tier 2 reads the counts of named items, the edge keeps whole slots: one ``of`` for the kernel."""
    ids = ["A", "B", "C", "D"]
    raw = {clicks_field("A"): b"3", imps_field("A"): b"10", expected_field("A"): b"2500000", imps_field("C"): b"7",
           clicks_field("NEW"): b"2", imps_field("NEW"): b"5", expected_field("NEW"): b"750000"}
    slot = codecs.parse_counts({k.encode(): v for k, v in raw.items()}, ItemIndex(ids), len(ids))
    named = ["C", "NEW", "A"]
    items = codecs.ItemCounts(ids)
    items.add(named, [raw.get(f) for f in codecs.count_fields(named)])
    rows = np.array([2, -1, 0], dtype=np.int64)
    for source in (slot, items):
        clicks, imps, expected = source.of(rows, 1, named)
        assert clicks.tolist() == [0.0, 2.0, 3.0] and imps.tolist() == [7.0, 5.0, 10.0]
        assert expected.tolist() == [0.0, 0.75, 2.5]          # millionths in the store
    clicks, imps, expected = items.of(np.array([0, 1], dtype=np.int64), 0, None)     # by row: names from the bundle
    assert clicks.tolist() == [3.0, 0.0] and imps.tolist() == [10.0, 0.0] and expected.tolist() == [2.5, 0.0]


def test_no_observations_is_none() -> None:
    assert codecs.SlotCounts(3, empty=True).of(np.array([0, 1]), 0, None) is None
    assert codecs.ItemCounts(["A"]).of(np.array([0]), 0, None) is None


# ---- profile ---------------------------------------------------------------------------------------------------

def test_stated_preferences_parse_categories_then_brands_and_survive_garbage() -> None:
    assert codecs.stated_preferences(b'{"categories": ["toys", "books"], "brands": ["Norvik", "toys"]}') == (
        "toys", "books", "Norvik")
    assert codecs.stated_preferences(None) == () and codecs.stated_preferences(b"not json") == ()
    assert codecs.stated_preferences(b"[1, 2]") == ()


def test_top_categories_from_the_processors_affinity_counters() -> None:
    prof = {b"cat:toys": b"3", b"cat:garden": b"12", b"brand:A": b"40", b"v:20000": b"9", b"cat:bad": b"x",
            b"cat:hats": b"3", b"lt": b"\x00" * 8}
    assert codecs.top_categories(prof) == ("garden", "hats", "toys")
    assert codecs.top_categories(prof, n=1) == ("garden",)
    assert codecs.top_categories({}) == ()


def test_profile_categories_prefer_the_explicit_list() -> None:
    assert codecs.profile_categories({b"recent_categories": b'["a", "b"]', b"cat:z": b"9"}) == ("a", "b")
    assert codecs.profile_categories({b"recent_categories": b"{", b"cat:z": b"9"}) == ()
    assert codecs.profile_categories({b"cat:z": b"9"}) == ("z",)


def test_purchases_most_recent_first_as_given() -> None:
    assert codecs.purchases([(b"A", 20.0), ("B", 10.0)]) == (("A", 20), ("B", 10))
