"""The edge's impression log and the ingest API write the same key and value for the same event (one
session's events on one partition, in order), and the edge's impression event passes the one validator."""

from __future__ import annotations

import numpy as np

from strata.shared.config import ImpressionSettings
from strata.shared.contracts.api import parse_event
from strata.shared.contracts.event_records import decode_event, encode_event, event_key
from strata.shared.serving.impression_log import ImpressionLog, Shown, impression_event, shown
from strata.streaming import ingest

SHOWN = Shown("t1", "u1", "s1", "home", "app", ("a", "b"), (False, True), np.array([2.5, 1.0]),
              np.array([47.5, 49.0]), "1.0.0", np.array([0.05, 0.0212345678], dtype=np.float32))


def test_edge_and_ingest_write_the_same_key_and_value() -> None:
    ev = impression_event("imp-1", 1_700_000_000_000, SHOWN)
    assert ingest.event_key is event_key and ingest.encode_event is encode_event     # one definition
    assert decode_event(encode_event(ev)) == ev


def test_records_are_json_and_older_msgpack_records_still_decode() -> None:
    import msgpack
    import orjson

    ev = {"event_id": "e1", "type": "view", "tenant": "t", "user_id": "u", "session_id": "s", "ts": 1,
          "channel": "web", "item_id": "i\u00e9", "consent": {"personalization": True}}
    assert orjson.loads(encode_event(ev)) == ev
    assert decode_event(msgpack.packb(ev, use_bin_type=True)) == ev          # written before the switch
    for bad in (b"{not json", b"\xc1", b""):
        try:
            decode_event(bad)
        except Exception:
            continue
        raise AssertionError(f"{bad!r} decoded")


def test_impression_event_is_valid_and_names_what_was_shown() -> None:
    ev = parse_event(impression_event("imp-1", 1_700_000_000_000, SHOWN, user_id="u2"))
    assert (ev.event_id, ev.impression_id, ev.type, ev.tier, ev.model_version) == (
        "imp-1", "imp-1", "impression", "edge", "1.0.0")
    assert (ev.tenant, ev.user_id, ev.session_id, ev.slot, ev.channel) == ("t1", "u2", "s1", "home", "app")
    assert ev.items == ["a", "b"] and ev.explored == [False, True]
    assert ev.alpha == [2.5, 1.0] and ev.beta == [47.5, 49.0]
    assert ev.prior == [0.05, 0.021235]          # the scorer's p, to the millionth the processor sums


def test_an_impression_without_the_scorers_p_is_still_valid() -> None:
    """Answers cached before the field existed, and other producers, log impressions without ``prior``."""
    ev = impression_event("imp-1", 1, SHOWN._replace(prior=None))
    assert "prior" not in ev and parse_event(ev).prior is None


def test_a_prior_must_be_one_probability_per_item() -> None:
    import pytest

    from strata.shared.errors import InvalidField

    good = impression_event("imp-1", 1, SHOWN)
    for bad, field in (([0.5], "prior"), ([0.5, 1.5], "prior[1]"), ([0.5, "x"], "prior[1]"), ("0.5", "prior"),
                       ([-0.1, 0.2], "prior[0]")):
        with pytest.raises(InvalidField) as err:
            parse_event({**good, "prior": bad})
        assert err.value.field == field
    with pytest.raises(InvalidField) as err:
        parse_event({"event_id": "e", "type": "view", "user_id": "u", "session_id": "s", "ts": 1, "channel": "web",
                     "item_id": "i", "prior": [0.5]})
    assert err.value.field == "prior"


def test_offer_is_bounded_and_counts_what_it_dropped() -> None:
    log = ImpressionLog(ImpressionSettings(broker="127.0.0.1:1", buffer=3))
    for i in range(5):
        log.offer(f"imp-{i}", i, SHOWN, None)
    assert len(log.buffer) == 3 and log.dropped == 2
    assert [rec[0] for rec in log.buffer] == ["imp-0", "imp-1", "imp-2"]


def test_tier2_impressions_name_their_tier() -> None:
    assert parse_event(impression_event("imp-2", 1, SHOWN, tier="streaming")).tier == "streaming"
    assert ImpressionLog(ImpressionSettings(), tier="streaming").tier == "streaming"


def test_what_cached_answers_keep_is_not_tracked_by_the_garbage_collector() -> None:
    import gc

    kept = shown(*SHOWN)
    gc.collect()
    assert type(kept) is tuple and not gc.is_tracked(kept)
    assert impression_event("i", 1, kept) == impression_event("i", 1, SHOWN)
