"""``strata soak`` for 2 minutes (the slow lane): every fault once, nothing lost or doubled among the events
answered 202, no 5xx from the edge or tier 2, every fault recovered."""

from __future__ import annotations

import pytest

from strata.deploy.launcher import LAUNCHER
from strata.loadtest.soak import FAULTS, main

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.mark.timeout(900)
def test_a_two_minute_soak_loses_nothing(registry_dir, tmp_path) -> None:
    result = main(LAUNCHER, str(registry_dir), minutes=2.0, json_path=str(tmp_path / "soak.json"))
    assert (result["lost"], result["doubled"], result["requests_never_accepted"]) == (0, 0, 0), result
    assert result["edge_tier2_5xx"] == 0, result["tiers"]
    assert [f["fault"] for f in result["faults"]] == list(FAULTS)
    assert all(f["recovery_s"] is not None for f in result["faults"]), result["faults"]
    assert result["events_accepted"] > 1000 and result["passed"]
    assert "stop_problems" not in result, result["stop_problems"]
