"""The router's seam in the kernel: ``Escalate`` asks an upper tier only when ``Route`` says so and a client is
configured; ``Encode`` renders the upper tier's answer with its tier and impression id and never caches it
under the edge's key (the session's next identical request gets it from the escalated-answer cache); a refusal
or a failure leaves the edge's own answer, degraded; a tier that is not configured is not escalated to."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from strata.edge.node import EdgeNode
from strata.shared.config import load_settings
from strata.shared.ranking.stages.ctx import RankCtx, Upstream
from strata.shared.ranking.stages.escalate import Escalate, EscalationFailed

BODY = {"user_id": "u", "session_id": "s-new", "k": 3}     # no session vector: low confidence -> the origin


class Upper:
    """A stand-in for the router's client (the real one comes with the router)."""

    def __init__(self, refuse: str | None = None, fail: str | None = None) -> None:
        self.refuse = refuse
        self.fail = fail
        self.asked: list[tuple[str, int | None]] = []
        self.seen_n = 0

    def seen(self) -> None:
        self.seen_n += 1

    def fetch(self, target: str, ctx: RankCtx, remember) -> None:
        raise AssertionError("sync mode never fetches in the background")

    def admit(self, target: str, ctx: RankCtx) -> tuple[str | None, float]:
        return (self.refuse, 0.0) if self.refuse is not None else (None, 0.06)

    async def ask(self, target: str, ctx: RankCtx) -> Upstream:
        self.asked.append((target, ctx.deadline_ns))
        if self.fail:
            raise EscalationFailed(self.fail)
        return Upstream(target, {"items": [{"item_id": "UP-1", "score": 0.9, "explored": False}], "confidence": None,
                                 "route_reasons": [], "model_version": "9.9.9", "impression_id": "up-imp-1"}, False)


def _ask(node: EdgeNode, body: dict = BODY) -> dict:
    status, _, payload = asyncio.run(node.handle_recommend(orjson.dumps(body), b"application/json", None))
    assert status == 200, payload
    return orjson.loads(payload)


def _node(registry_dir, upper: Upper | None) -> EdgeNode:
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"}}), upstream=upper)
    node.load_model()
    return node


def test_an_escalated_answer_is_served_with_its_tier_and_never_cached_under_the_edge_key(registry_dir) -> None:
    upper = Upper()
    node = _node(registry_dir, upper)
    first = _ask(node)
    assert (first["tier"], first["items"][0]["item_id"], first["impression_id"]) == ("origin", "UP-1", "up-imp-1")
    assert first["degraded"] is False and upper.asked[0][0] == "origin" and upper.asked[0][1] is not None
    assert len(node.responses.semantic) == 0 and node.responses.exact is not None and len(node.responses.exact) == 0
    second = _ask(node)
    assert (second["tier"], second["timing"]["cache"], len(upper.asked)) == ("origin", "hit", 1)
    node.invalidate_session("default", "s-new")
    assert _ask(node)["timing"]["cache"] == "miss" and len(upper.asked) == 2   # the session changed: asked again


def test_a_confident_edge_answer_is_not_escalated(registry_dir) -> None:
    upper = Upper()
    node = EdgeNode(load_settings(edge={"registry": str(registry_dir), "store": {"url": "none"},
                                        "confidence": {"t_edge": 0.0}}), upstream=upper)
    node.load_model()
    assert _ask(node)["tier"] == "edge" and upper.asked == [] and upper.seen_n == 1


@pytest.mark.parametrize(("upper", "reason", "degraded"), [
    (Upper(refuse="escalation_budget"), "escalation_budget", True),
    (Upper(refuse="origin_unavailable"), "origin_unavailable", True),
    (Upper(fail="origin_timeout"), "origin_timeout", True),
    (Upper(refuse=""), "no_session_vector", False),             # not configured: the edge's answer is the answer
])
def test_a_refused_or_failed_escalation_leaves_the_edge_answer(registry_dir, upper: Upper, reason: str,
                                                                degraded: bool) -> None:
    d = _ask(_node(registry_dir, upper))
    assert d["tier"] == "edge" and len(d["items"]) == 3 and d["route_tier"] == "origin"
    assert d["route_reasons"][-1] == reason and d["degraded"] is degraded
    assert upper.asked == [] or upper.fail


def test_escalate_knows_the_tiers() -> None:
    with pytest.raises(ValueError, match="tier must be one of"):
        Escalate("pop")
    assert Escalate("streaming").level == 1 and Escalate("edge").suspends is True
