"""Pre-encoded answers must decode to exactly what encoding the whole response would give."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from strata.shared.serving.answers import Answer
from strata.shared.serving.codecs import JSON, MSGPACK

STATIC = {"items": [{"item_id": "SKU-1", "score": 0.5, "explored": False},
                    {"item_id": "SKU-\u00e9\"2", "score": 0.25, "explored": True}],
          "tier": "edge", "confidence": 0.61, "route_reasons": ["confident"], "route_tier": "edge",
          "model_version": "1.0.0", "unknown_candidates": 0}


@pytest.mark.parametrize("filled_by", [JSON, MSGPACK])
@pytest.mark.parametrize("degraded", [False, True])
def test_json_and_msgpack_render_the_full_response(degraded, filled_by):
    ans = Answer(STATIC, degraded=False, media=filled_by)   # the other codec is derived from this one
    expected = {**STATIC, "degraded": degraded, "request_id": "r1", "impression_id": "i1",
                "timing": {"server_us": 42, "cache": "hit"}}
    as_json = ans.render(JSON, degraded, "r1", "i1", 42, "hit")
    as_mp = ans.render(MSGPACK, degraded, "r1", "i1", 42, "hit")
    assert orjson.loads(as_json) == expected
    assert msgpack.unpackb(as_mp) == expected


def test_too_many_fields_for_a_fixmap_is_refused():
    with pytest.raises(ValueError, match="fixmap"):
        Answer({f"f{i}": i for i in range(12)}, degraded=False)
