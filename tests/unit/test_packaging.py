"""The wheel installs one top-level package, ``strata``, holding the design card's folders as subpackages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"edge", "streaming", "origin", "model_export", "shared", "loadtest", "deploy"}


@pytest.mark.slow
def test_the_wheel_holds_only_the_strata_namespace(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("strata-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"strata", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                                                 + ".dist-info"}
    assert not any(n == "strata/__init__.py" for n in names), "strata is a namespace package"
    assert {n.split("/")[1] for n in names if n.startswith("strata/")} == FOLDERS
    # every module of every folder made it in (a subpackage missing from setup.py's list would not)
    source = {f"strata/{p.relative_to(ROOT).as_posix()}" for f in FOLDERS for p in (ROOT / f).rglob("*.py")}
    assert source <= set(names), sorted(source - set(names))[:5]
    assert "tests/" not in {n[:6] for n in names}
    # data files the commands read at run time: the SLO files, the Prometheus/Grafana files
    for data in ("strata/loadtest/slo.yaml", "strata/loadtest/slo-production.yaml",
                 "strata/deploy/observability/strata-rules.yaml", "strata/deploy/observability/prometheus.yaml",
                 "strata/deploy/observability/strata-dashboard.json"):
        assert data in names, data
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "strata = strata.deploy.cli:app" in entry
