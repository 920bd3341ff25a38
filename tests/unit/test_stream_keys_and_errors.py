"""Key building is injective whatever the ids (no key of one kind equals a key of another), and
``errors.is_retriable`` maps library errors to the one flag callers branch on."""

from __future__ import annotations

import itertools

import aiokafka.errors as kafka
import pytest
import redis.exceptions as rex
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.shared import keys as K
from strata.shared.errors import InvalidField, ServiceUnavailable, is_retriable

_KINDS = {
    "session": lambda t, a: K.session_key(t, a), "bandit": lambda t, a: K.bandit_key(t, a),
    "profile": lambda t, a: K.profile_key(t, a), "purchases": lambda t, a: K.purchases_key(t, a),
    "impression": lambda t, a: K.impression_key(t, a), "pending": lambda t, a: K.pending_clicks_key(t, a),
    "seen": lambda t, a: K.seen_key(t, a),
}
_IDS = st.text(alphabet=st.sampled_from("ab{}:%u\x1f-"), min_size=1, max_size=8)


@settings(max_examples=400, deadline=None)
@given(t1=_IDS, a1=_IDS, t2=_IDS, a2=_IDS)
def test_no_two_different_id_pairs_or_kinds_share_a_key(t1: str, a1: str, t2: str, a2: str) -> None:
    for (k1, f1), (k2, f2) in itertools.product(_KINDS.items(), repeat=2):
        if (k1, t1, a1) != (k2, t2, a2):
            assert f1(t1, a1) != f2(t2, a2), (k1, t1, a1, k2, t2, a2)


def test_the_review_collisions_are_distinct_keys() -> None:
    assert K.pending_clicks_key("a", "b}:imp:c") != K.impression_key("a}:pclk:b", "c")
    assert K.bandit_key("a", "x:u:y}:purchases") != K.purchases_key("a}:bandit:x", "y")
    assert K.session_key("a", "u:b") != K.profile_key("a", "b")


def test_safe_ids_are_used_as_is_and_a_hash_tag_holds_only_the_tenant_and_id() -> None:
    assert K.session_key("default", "sess-1.2_x@y") == "strata:{default:sess-1.2_x@y}:session"
    key = K.profile_key("a}{", "u:1")
    assert key == "strata:{a%7D%7B:u:u%3A1}:profile"
    assert key[key.index("{") + 1:key.index("}")] == "a%7D%7B:u:u%3A1"


@pytest.mark.parametrize(("exc", "retriable"), [
    (rex.ConnectionError("refused"), True), (rex.TimeoutError(), True), (rex.BusyLoadingError(), True),
    (rex.ResponseError("OOM command not allowed when used memory > 'maxmemory'"), True),
    (rex.ResponseError("BUSY Redis is busy running a script"), True),
    (rex.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (rex.ResponseError("ERR increment or decrement would overflow"), False),
    (rex.ResponseError("STRATA_WRONGTYPE k holds a string"), False),
    (kafka.NodeNotReadyError(), True), (kafka.RequestTimedOutError(), True), (kafka.KafkaTimeoutError(), True),
    (kafka.KafkaError("batch cancelled"), True), (kafka.MessageSizeTooLargeError(), False),
    (kafka.TopicAuthorizationFailedError(), False),
    (ServiceUnavailable("down"), True), (InvalidField("bad", field="x"), False),
    (TimeoutError(), True), (OSError("reset"), True), (ValueError("bug"), False), (KeyError("x"), False),
])
def test_is_retriable_maps_library_errors(exc: BaseException, retriable: bool) -> None:
    assert is_retriable(exc) is retriable
