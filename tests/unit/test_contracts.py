"""Request and event contracts: valid inputs and their defaults (invalid ones: test_contracts_invalid.py)."""

from __future__ import annotations

from strata.shared.contracts.api import (
    CHANNELS,
    DEVICES,
    EVENT_TYPES,
    MAX_CANDIDATES,
    MAX_ID_LEN,
    MAX_K,
    TIERS,
    Context,
    RecommendRequest,
    parse_recommend,
)

MINIMAL = {"user_id": "u-1", "session_id": "s-1"}


def test_constants() -> None:
    assert (MAX_K, MAX_CANDIDATES, MAX_ID_LEN) == (100, 1000, 128)
    assert CHANNELS == ("web", "app", "email", "sms", "pos")
    assert DEVICES == ("desktop", "mobile", "tablet", "other")
    assert EVENT_TYPES[:4] == ("view", "click", "add_to_cart", "purchase")   # training data indexes these
    assert TIERS == ("edge", "streaming", "origin")


def test_minimal_request_defaults() -> None:
    req = parse_recommend(dict(MINIMAL))
    assert req == RecommendRequest(user_id="u-1", session_id="s-1", slot="home", tenant="default", k=10,
                                   candidates=None, context=Context("web", "other", "", 12), explain=False)


def test_full_request() -> None:
    body = {
        "tenant": "acme", "user_id": "u-9", "session_id": "s-9", "slot": "pdp", "k": 3,
        "candidates": ["SKU-1", "SKU-2"], "explain": True,
        "context": {"channel": "sms", "device": "tablet", "country": "DE", "hour": 23},
    }
    req = parse_recommend(body)
    assert (req.tenant, req.user_id, req.session_id, req.slot, req.k, req.explain) == (
        "acme", "u-9", "s-9", "pdp", 3, True)
    assert req.candidates == ["SKU-1", "SKU-2"]
    assert req.context == Context("sms", "tablet", "DE", 23)


def test_boundary_values_are_accepted() -> None:
    body = dict(MINIMAL, k=1, candidates=[f"i{i}" for i in range(MAX_CANDIDATES)], user_id="u" * MAX_ID_LEN)
    req = parse_recommend(body)
    assert req.k == 1 and len(req.candidates) == 1000 and len(req.user_id) == 128
    assert parse_recommend(dict(MINIMAL, k=100)).k == 100
    assert parse_recommend(dict(MINIMAL, context={"hour": 0})).context.hour == 0
    assert parse_recommend(dict(MINIMAL, candidates=["x" * MAX_ID_LEN])).candidates == ["x" * 128]


def test_partial_context_gets_defaults() -> None:
    assert parse_recommend(dict(MINIMAL, context={"device": "mobile"})).context == Context("web", "mobile", "", 12)
    assert parse_recommend(dict(MINIMAL, context={})).context == Context()
    assert parse_recommend(dict(MINIMAL, context=None)).context == Context()


def test_empty_candidate_list_is_kept() -> None:
    assert parse_recommend(dict(MINIMAL, candidates=[])).candidates == []


def test_every_channel_and_device_accepted() -> None:
    for ch in CHANNELS:
        for dev in DEVICES:
            ctx = parse_recommend(dict(MINIMAL, context={"channel": ch, "device": dev})).context
            assert (ctx.channel, ctx.device) == (ch, dev)
