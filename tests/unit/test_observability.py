"""deploy/observability: the generated files are current, promtool accepts and unit-tests every rule, and every
query of the rules and the dashboard reads a metric a tier exports (or one that is pending, named below).

promtool (Debian's ``prometheus`` package; ``.ci/run`` installs it) is required in CI: the ``CI`` environment
variable set to anything but ``""``, ``0``, ``false`` or ``no`` (CI runs ``.ci/run`` with ``CI=true``). Outside
CI, without promtool, those tests skip with a banner saying how to install it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from strata.deploy.observability import dashboard, rules, scrape
from strata.loadtest.slo import load_slos

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
TEST_FILES = sorted((OBS / "tests").glob("*.yaml"))
# Metrics the rules and the dashboard read that no tier exports yet: name -> who provides it.
PENDING: dict[str, str] = {}
BUILTIN = {"up", "ALERTS"}
# A file that defines metrics on an Instruments object created elsewhere: its namespace.
NAMESPACE_OF = {"streaming/app.py": "strata_ingest"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, what: str) -> str:
    """The path of Debian prometheus' ``name``; outside CI a skip with a banner without it, in CI a failure."""
    path = shutil.which(name)
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is required in CI (apt-get install -y prometheus; .ci/run does it)")
        pytest.skip(f"=== {name} not installed: {what} SKIPPED (apt-get install -y prometheus; required when "
                    "CI is set) ===")
    return path


def promtool() -> str:
    return require_binary("promtool", "the Prometheus rule tests are")


def exported_metrics() -> set[str]:
    """Every series name a tier can expose: ``Instruments("<ns>")`` + each name ``define``d, ``gauge``d,
    ``histogram``med or ``inc``ed in the same file (files using another file's instruments: NAMESPACE_OF), with the suffixes the exposition adds (counters ``_total``, histograms ``_bucket/_count/_sum``)."""
    names: set[str] = set()
    for folder in ("edge", "streaming", "origin", "shared"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            defined = re.findall(r'\.(?:define|gauge|histogram|inc)\(\s*"([a-z0-9_]+)"', text)
            spaces = re.findall(r'Instruments\("([a-z0-9_]+)"\)', text)
            if not spaces and path.relative_to(ROOT).as_posix() in NAMESPACE_OF:
                spaces = [NAMESPACE_OF[path.relative_to(ROOT).as_posix()]]
            for ns in spaces:
                for name in defined:
                    base = f"{ns}_{name}"
                    names |= {base, base + "_total", base + "_bucket", base + "_count", base + "_sum"}
    return names


def referenced(expr: str) -> set[str]:
    """Metric names in a PromQL expression: ``strata_*`` series, recorded series (``a:b:c``), built-ins."""
    expr = re.sub(r'"[^"]*"', '""', expr)                       # label values are not names
    found = set(re.findall(r"(?<![\w:])(strata_[a-z0-9_]+|[a-z_]+:[a-z0-9_:]+)", expr))
    found |= {b for b in BUILTIN if re.search(rf"(?<![\w:]){b}(?![\w:])", expr)}
    return found


def rule_groups() -> list[dict]:
    return yaml.safe_load(rules.RULES_FILE.read_text())["groups"]


def recorded() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def alerts() -> set[str]:
    return {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}


def all_queries() -> dict[str, str]:
    out = {f"rule {r.get('record') or r.get('alert')} #{i}": r["expr"]
           for g in rule_groups() for i, r in enumerate(g["rules"])}
    out |= {f"dashboard #{i}": q for i, q in enumerate(dashboard.queries(json.loads(dashboard.DASHBOARD_FILE.read_text())))}
    return out


# -- the files are current -------------------------------------------------------------------------------

def test_rules_file_is_generated_from_the_production_slo_file() -> None:
    assert rules.RULES_FILE.read_text() == rules.render(load_slos(rules.PRODUCTION_FILE)), \
        "regenerate: python -m strata.deploy.observability.rules --out deploy/observability/strata-rules.yaml"


def test_dashboard_and_scrape_config_are_current() -> None:
    assert dashboard.DASHBOARD_FILE.read_text() == dashboard.render(), \
        "regenerate: python -m strata.deploy.observability.dashboard --out deploy/observability/strata-dashboard.json"
    assert scrape.CONFIG_FILE.read_text() == scrape.render(scrape.config(scrape.DEFAULT_TARGETS), scrape.SHIPPED_HEAD)


def test_every_slo_a_server_metric_measures_has_its_burn_rate_series() -> None:
    slos = load_slos(rules.PRODUCTION_FILE)
    sli = [r for g in rule_groups() for r in g["rules"] if r.get("record") == "slo:sli_error:ratio_rate1h"]
    ids = {r["labels"]["slo"] for r in sli}
    want = {rules.slug(s.name) for s in slos if s.limit_key != "min_rps"} | {"freshness"}
    assert ids == want
    budgets = {r["labels"]["slo"] for g in rule_groups() for r in g["rules"] if r.get("record") == "slo:error_budget:ratio"}
    assert budgets == want
    for r in sli:
        windows = {x["record"].rsplit("rate", 1)[1] for g in rule_groups() for x in g["rules"]
                   if x.get("record", "").startswith("slo:sli_error") and x["labels"]["slo"] == r["labels"]["slo"]}
        assert windows == set(rules.WINDOWS)


def test_latency_limits_become_bucket_bounds_and_windows_scale() -> None:
    assert rules.bucket_for(5) == 0.005 and rules.bucket_for(4) == 0.005 and rules.bucket_for(5000) == 1.0
    assert rules.scaled("5m", 100) == "3s" and rules.scaled("1h", 100) == "36s" and rules.scaled("3d", 1) == "3d"


# -- every query reads a metric that exists (or is pending) ------------------------------------------------

def test_every_query_reads_exported_or_recorded_metrics() -> None:
    exported, rec = exported_metrics(), recorded()
    unknown, pending = {}, {}
    for where, expr in all_queries().items():
        for name in referenced(expr):
            if name in exported or name in rec or name in BUILTIN:
                continue
            (pending if name in PENDING else unknown).setdefault(name, []).append(where)
    assert not unknown, f"queries read metrics no tier exports: {unknown}"
    print("\n=== pending metrics (the rules and dashboard read them; no tier exports them yet): " +
          "; ".join(f"{n} ({PENDING[n]}): {len(w)} queries" for n, w in sorted(pending.items())) + " ===")
    assert set(pending) == set(PENDING), "a pending metric is no longer read: drop it from PENDING"


@pytest.mark.parametrize("name", sorted(PENDING))
def test_pending_metric_is_still_pending(name: str) -> None:
    """Reported as xfail while pending; fails once a tier exports it (then PENDING must lose the name)."""
    if name in exported_metrics():
        pytest.fail(f"{name} is exported now: remove it from PENDING (and from docs/operations.md's gaps)")
    pytest.xfail(f"pending: {name} ({PENDING[name]})")


def test_every_dashboard_panel_has_queries_and_the_required_views() -> None:
    board = json.loads(dashboard.DASHBOARD_FILE.read_text())
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for view in ("latency", "escalation share", "freshness", "cache hit", "lag", "error budget burn"):
        assert view in titles, view
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in board["panels"])


# -- promtool ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_promtool_check_rules_and_config() -> None:
    tool = promtool()
    out = subprocess.run([tool, "check", "rules", str(rules.RULES_FILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([tool, "check", "config", str(scrape.CONFIG_FILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    tool = promtool()
    out = subprocess.run([tool, "test", "rules", *map(str, TEST_FILES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_promtool_unit_tests_fail_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: with the freshness SLI's stall term removed, the stopped-processor test fails."""
    tool = promtool()
    broken = rules.RULES_FILE.read_text().replace("clamp_min(", "0 * clamp_min(")
    (tmp_path / "strata-rules.yaml").write_text(broken)
    (tmp_path / "tests").mkdir()
    for f in TEST_FILES:
        (tmp_path / "tests" / f.name).write_text(f.read_text())
    out = subprocess.run([tool, "test", "rules", *(str(tmp_path / "tests" / f.name) for f in TEST_FILES)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "freshness" in out.stdout + out.stderr


def test_every_alert_and_recorded_series_is_unit_tested() -> None:
    tests = [t for f in TEST_FILES for t in yaml.safe_load(f.read_text())["tests"]]
    tested_alerts = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])}
    assert alerts() <= tested_alerts, sorted(alerts() - tested_alerts)
    exprs = " ".join(e["expr"] for t in tests for e in t.get("promql_expr_test", []))
    untested = {r for r in recorded() if not re.search(rf"(?<![\w:]){re.escape(r)}(?![\w:])", exprs)}
    assert not untested, sorted(untested)
    # alert tests that expect it to fire, for each alert
    firing = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    assert alerts() <= firing, sorted(alerts() - firing)


@pytest.mark.slow
def test_scaled_rules_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    f = tmp_path / "scaled.yaml"
    f.write_text(rules.render(load_slos(rules.PRODUCTION_FILE), scale=100))
    out = subprocess.run([tool, "check", "rules", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
