"""Token buckets per key and per client address: burst, refill, Retry-After, PoP-forwarded addresses, the
bound on remembered buckets, and debits from other processes (the shared limit)."""

from __future__ import annotations

import pytest

from strata.shared.auth.gate import Gate, KeyRing
from strata.shared.auth.keys import create_key
from strata.shared.auth.limits import Limiter, TokenBuckets
from strata.shared.errors import TooManyRequests
from strata.shared.serving.error_mapper import error_reply


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    b = TokenBuckets(rate=2.0, burst=3.0, what="key")
    assert [b.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", 0.0) == pytest.approx(0.5)          # the next token in 1/2 s
    assert b.take("k", 0.5) == 0.0
    assert b.take("k", 0.5) == pytest.approx(0.5)
    assert b.take("other", 0.5) == 0.0                      # buckets are per name


def test_burst_zero_means_one_second_of_the_rate() -> None:
    b = TokenBuckets(rate=5.0, burst=0.0, what="key")
    assert sum(b.take("k", 0.0) == 0.0 for _ in range(10)) == 5


def test_limiter_429_names_the_limit_with_retry_after() -> None:
    clock = Clock()
    lim = Limiter(per_key_rps=1.0, per_ip_rps=0.0, burst=1.0, clock=clock)
    lim.charge("key1", "10.0.0.1")
    with pytest.raises(TooManyRequests) as err:
        lim.charge("key1", "10.0.0.1")
    assert err.value.field == "Authorization" and "1 requests/s per key" in err.value.reason
    reply = error_reply(err.value)
    assert reply.status == 429 and (b"retry-after", b"1") in reply.headers
    lim.charge("key2", "10.0.0.1")                          # another key is not limited by key1's bucket
    clock.t += 1.0
    lim.charge("key1", "10.0.0.1")


def test_per_address_limit_applies_without_auth() -> None:
    lim = Limiter(per_key_rps=0.0, per_ip_rps=2.0, burst=2.0, clock=Clock())
    lim.charge(None, "10.0.0.1")
    lim.charge(None, "10.0.0.1")
    with pytest.raises(TooManyRequests) as err:
        lim.charge(None, "10.0.0.1")
    assert err.value.field == "client"
    lim.charge(None, "10.0.0.2")


def test_only_a_pop_key_may_name_the_client_address(tmp_path) -> None:
    path = tmp_path / "keys.json"
    pop_key, _ = create_key(path, "shopA", ("recommend",), pop="fra1")
    plain_key, _ = create_key(path, "shopA", ("recommend",))
    gate = Gate(KeyRing(path), Limiter(0.0, 1.0, 1.0, clock=Clock()))

    def headers(key: str, fwd: str) -> list:
        return [(b"authorization", f"Bearer {key}".encode()), (b"x-forwarded-for", fwd.encode())]

    pop = ("192.0.2.1", 1)          # every request of the PoP comes from its address
    gate.admit(headers(pop_key, "1.1.1.1, 203.0.113.5"), pop, "recommend")
    gate.admit(headers(pop_key, "203.0.113.6"), pop, "recommend")      # another shopper: its own bucket
    with pytest.raises(TooManyRequests):
        gate.admit(headers(pop_key, "203.0.113.5"), pop, "recommend")
    # a plain key's X-Forwarded-For is ignored: the socket's address is charged
    gate.admit(headers(plain_key, "203.0.113.7"), ("198.51.100.1", 1), "recommend")
    with pytest.raises(TooManyRequests):
        gate.admit(headers(plain_key, "203.0.113.8"), ("198.51.100.1", 1), "recommend")


def test_remembered_buckets_are_bounded() -> None:
    b = TokenBuckets(rate=1.0, burst=1.0, what="client address", max_entries=100)
    for i in range(1000):
        b.take(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(b) <= 100


def test_debits_from_other_processes_empty_the_local_bucket() -> None:
    b = TokenBuckets(rate=10.0, burst=10.0, what="key")
    assert b.take("k", 0.0) == 0.0
    assert b.drain_taken() == {"k": 1} and b.drain_taken() == {}
    b.debit("k", 9.0, 0.0)                 # the other replicas took 9 of the 10
    assert b.take("k", 0.0) > 0            # none left here
    assert b.take("k", 0.1) == 0.0         # and it refills at the one rate
