"""The Grafana dashboard (``strata-dashboard.json``): per-tier latency, escalation share, freshness, cache hits,
consumer lag, error-budget burn. Every query reads a series of ``strata-rules.yaml`` or a metric a tier
exports (a unit test checks both; an end-to-end test checks each returns data from a running system).

    python -m strata.deploy.observability.dashboard [--out FILE]

Import it in Grafana (Dashboards -> Import) and pick the Prometheus data source that scrapes Strata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from strata.deploy.observability import emit

HERE = Path(__file__).parent
DASHBOARD_FILE = HERE / "strata-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, [(expr, legend)], width, description)
PANELS: list[tuple[str, str, list[tuple[str, str]], int, str]] = [
    ("Latency p99 per tier (server)", "s",
     [("strata:request_latency_seconds:p99_rate5m", "{{tier}} {{endpoint}}")], 12,
     "Server-side p99 of each tier's answers over 5 minutes (histogram_quantile)."),
    ("Latency p50 / p95 per tier (server)", "s",
     [("strata:request_latency_seconds:p50_rate5m", "p50 {{tier}} {{endpoint}}"),
      ("strata:request_latency_seconds:p95_rate5m", "p95 {{tier}} {{endpoint}}")], 12, ""),
    ("Requests per second per tier", "reqps", [("strata:requests:rate5m", "{{tier}} {{endpoint}}")], 8, ""),
    ("Escalation share (edge -> upper tiers)", "percentunit",
     [("strata:escalation:share_rate5m", "{{target}}")], 8,
     "Share of the edge's recommend requests its router escalated, per target tier."),
    ("Degraded answers share", "percentunit", [("strata:degraded:ratio_rate5m", "{{tier}} {{endpoint}}")], 8,
     "Answers given with degraded=true (the origin counts per reason: an upper bound)."),
    ("Freshness: event -> store", "s",
     [("strata:freshness_seconds:p50_rate5m", "p50"), ("strata:freshness_seconds:p99_rate5m", "p99")], 8,
     "Event timestamp to the processor's store write."),
    ("Events accepted vs applied", "ops",
     [("strata:events_accepted:rate5m", "accepted (ingest)"), ("strata:events_applied:rate5m", "applied (processor)")],
     8, "Applied includes the tiers' impression events (they bypass the ingest API)."),
    ("Consumer lag", "short",
     [("strata:consumer_lag:sum", "total"), ("sum by (partition) (strata_processor_consumer_lag)", "p{{partition}}")],
     8, "Records behind the end of the events log."),
    ("Edge cache hit ratio", "percentunit", [("strata:cache_hit:ratio_rate5m", "{{cache}}")], 8, ""),
    ("Error budget burn rate (1h and 6h)", "short",
     [("slo:sli_error:ratio_rate1h / on(slo) group_left() slo:error_budget:ratio", "1h {{slo}}"),
      ("slo:sli_error:ratio_rate6h / on(slo) group_left() slo:error_budget:ratio", "6h {{slo}}")], 16,
     "1 = spending the budget exactly over the SLO period; the page fires above 14.4 (1h) / 6 (6h)."),
    ("LLM fallback share (explanations)", "percentunit", [("strata:llm_fallback:share_rate5m", "fallback")], 8,
     "Explanations the template wrote instead of the LLM (no series with the template reasoner)."),
    ("Dead-lettered events per second", "ops", [("strata:dead_lettered:rate5m", "dead-lettered")], 8, ""),
    ("Router breakers open", "short", [("max by (target, endpoint) (strata_router_breaker_open)",
                                        "{{target}} {{endpoint}}")], 8, "1 while a breaker is open."),
    ("Targets up", "short", [('up{job=~"strata-.*"}', "{{job}} {{instance}}")], 8, ""),
]


def build() -> dict:
    panels = []
    x = y = 0
    for i, (title, unit, targets, width, desc) in enumerate(PANELS, start=1):
        if x + width > 24:
            x, y = 0, y + 8
        panels.append({
            "id": i, "type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": width, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(targets)],
        })
        x += width
    return {
        "title": "Strata", "uid": "strata-overview", "tags": ["strata"], "timezone": "utc", "schemaVersion": 39,
        "editable": True, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus", "current": {}}]},
        "annotations": {"list": [{"name": "SLO alerts", "datasource": DS, "enable": True, "iconColor": "red",
                                  "expr": 'ALERTS{alertname=~"StrataSLOBurn.*", alertstate="firing"}'}]},
        "panels": panels,
    }


def queries(dashboard: dict) -> list[str]:
    """Every PromQL expression in the dashboard (panel targets and annotations)."""
    out = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return out + [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if a.get("expr")]


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    return emit(render(), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
