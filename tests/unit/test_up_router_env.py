"""``strata up``'s router settings for its edge: its own upstreams and admission budget, unless the config names
them (``deploy.up.Stack.router_env``)."""

from __future__ import annotations

from pathlib import Path

from strata.deploy.up import UP_ESCALATION_SHARE, Stack


def _stack(tmp_path: Path, **kw) -> Stack:
    stack = Stack(tmp_path / "registry", tmp_path / "run", **kw)
    stack._ports.update(streaming=18090, origin=18091)       # what starting those two would have assigned
    return stack


def test_up_gives_its_edge_a_one_origin_budget_and_its_own_upstreams(tmp_path: Path) -> None:
    env = _stack(tmp_path).router_env()
    assert env["STRATA_ROUTER__MAX_ESCALATION_SHARE"] == str(UP_ESCALATION_SHARE)
    assert env["STRATA_ROUTER__ORIGIN_URLS"] == '["http://127.0.0.1:18091"]'
    assert env["STRATA_ROUTER__STREAMING_URLS"] == '["http://127.0.0.1:18090"]'


def test_a_budget_and_urls_in_the_config_stand(tmp_path: Path) -> None:
    cfg = tmp_path / "strata.yaml"
    cfg.write_text("router:\n  max_escalation_share: 0.2\n  origin_urls: ['http://10.0.0.5:8091']\n")
    env = _stack(tmp_path, config=cfg).router_env()
    assert "STRATA_ROUTER__MAX_ESCALATION_SHARE" not in env and "STRATA_ROUTER__ORIGIN_URLS" not in env
