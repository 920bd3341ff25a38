"""A bounded ``strata simulate`` that starts the system itself (``strata up`` plus an edge with the router off):
every policy answered through real processes, the probe's frontier and reliability computed, and nothing left
running or on disk afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from strata.deploy.local import port_open, strata_command

pytestmark = pytest.mark.slow


def test_simulate_starts_the_system_scores_every_policy_and_cleans_up(full_registry_dir: Path,
                                                                       tmp_path: Path) -> None:
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    out_json = tmp_path / "sim.json"
    argv = [*strata_command(), "simulate", "--registry", str(full_registry_dir), "--users", "3", "--duration", "10",
            "--think", "0.2", "--seed", "5", "--json", str(out_json)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "200", "TMPDIR": str(tmp_root)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    report = json.loads(out_json.read_text())
    pol = report["policies"]
    assert list(pol) == ["routed", "edge", "streaming", "origin", "popular", "random"], out
    assert all(m["requests"] > 0 for m in pol.values()), pol
    assert pol["edge"]["tier_share"]["edge"] == 1.0                    # the router-off edge answers itself
    assert pol["edge"]["edge_cache_hit_ratio"] is not None
    # the probe: every sweep point and the configured t_edge, shares from 0 (t_edge 0) up
    fr = report["frontier"]
    assert {p["t_edge"] for p in fr} >= {0.0, 0.5, 1.0, report["t_edge"]}
    assert fr[0]["escalation_share"] == 0.0 and fr[0]["expected_ctr"] == fr[0]["random_expected_ctr"]
    assert all(0 <= p["escalation_share"] <= 1 for p in fr)
    assert "edge confidence reliability" in out and "the router's targets" in out
    # everything it started is gone: its ports are closed and its run directory removed
    urls = re.search(r"edge \(router on\) (http://\S+), streaming (http://\S+), origin (http://\S+);", out)
    plain = re.search(r"edge with the router off: (http://\S+)", out)
    assert urls is not None and plain is not None, out
    for url in (*urls.groups(), plain.group(1)):
        assert not port_open("127.0.0.1", int(url.rsplit(":", 1)[1])), url
    assert [p.name for p in tmp_root.iterdir() if p.name.startswith("strata-")] == []
