"""Prometheus recording rules and alerts for Strata, generated from an SLO file (``loadtest/slo-production.yaml``).

    python -m strata.deploy.observability.rules [--slo FILE] [--scale N] [--out FILE]

``deploy/observability/strata-rules.yaml`` is this module's output for the shipped production SLO file (a
unit test checks it is current). ``--scale N`` divides every window and ``for:`` by N (the end-to-end test
runs a real Prometheus with minutes turned into seconds).

What it writes (Google SRE workbook, "Alerting on SLOs", multi-window multi-burn-rate):
- per SLO of the file that a server metric can measure, ``slo:sli_error:ratio_rate<W>{slo=...}`` for W in
  5m 30m 1h 2h 6h 1d 3d (the share of bad events: slower than the latency limit, 5xx, degraded) and
  ``slo:error_budget:ratio{slo=...}`` (the share of bad events allowed: 1 - percentile for a latency SLO,
  the ratio itself for an error or degraded ratio); ``min_rps`` is a load-test figure, no alert;
- the freshness SLO (event -> store within ``FRESHNESS_S`` for ``FRESHNESS_OBJECTIVE`` of events); events
  accepted by the ingest and not applied count as bad, so a stopped processor burns it at 100%;
- ``StrataSLOBurnFast`` (page: 1h and 5m over 14.4x budget, or 6h and 30m over 6x) and
  ``StrataSLOBurnSlow`` (ticket: 1d and 2h over 3x, or 3d and 6h over 1x), one pair for every SLO;
- dashboard series (``strata:...``) and operational alerts: consumer lag, breaker open, DLQ growth, LLM
  fallback share, cache hit ratio, escalation share, store/broker down, a target down.

A latency limit becomes a histogram bucket: the smallest bucket bound at or above it (the tiers' buckets:
``strata.shared.serving.metrics.LATENCY_BUCKETS_S``), said in the rule's ``limit_s`` label.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from strata.deploy.observability import emit
from strata.loadtest.slo import LATENCY_LIMITS, PRODUCTION_FILE, Slo, load_slos
from strata.shared.serving.metrics import LATENCY_BUCKETS_S

HERE = Path(__file__).parent
RULES_FILE = HERE / "strata-rules.yaml"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (long window, short window, burn-rate factor, severity, for)
BURN = (("1h", "5m", 14.4, "page", "2m"), ("6h", "30m", 6.0, "page", "15m"),
        ("1d", "2h", 3.0, "ticket", "1h"), ("3d", "6h", 1.0, "ticket", "3h"))
FRESHNESS_S = 1.0                 # an event's effect in the store within 1 s of its ts ...
FRESHNESS_OBJECTIVE = 0.99        # ... for 99% of the events
FRESHNESS_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class Series:
    """How one (endpoint, tier) is measured on the server: latency histogram, answers by status, degraded."""

    histogram: str
    requests: str
    selector: str = ""            # label matchers shared by both, e.g. route="/v1/recommend"
    degraded: str | None = None
    errors: str | None = None     # a bad-answer rate expression when the counter is shared with other routes


SERIES: dict[tuple[str, str], Series] = {
    ("recommend", "edge"): Series("strata_edge_request_seconds", "strata_edge_requests_total",
                                  'route="/v1/recommend"', "strata_edge_degraded_total"),
    ("recommend", "streaming"): Series("strata_tier2_request_seconds", "strata_tier2_requests_total", "",
                                       "strata_tier2_degraded_total"),
    # the origin counts degraded answers per reason: an answer with two reasons counts twice (an upper bound)
    ("recommend", "origin"): Series("strata_origin_request_seconds", "strata_origin_requests_total",
                                    'route="/v1/recommend"', "strata_origin_degraded_total"),
    ("explain", "origin"): Series("strata_origin_request_seconds", "strata_origin_requests_total",
                                  'route="/v1/explain"'),
    # the ingest's requests_total counts every route of the streaming service (tier 2's recommend too):
    # its 5xx minus tier 2's; the total is the /v1/events latency histogram's count
    ("events", "streaming"): Series(
        "strata_ingest_request_seconds", "strata_ingest_request_seconds_count", "", None,
        'clamp_min((sum(rate(strata_ingest_requests_total{{status=~"5.."}}[{w}])) or vector(0)) '
        '- (sum(rate(strata_tier2_requests_total{{status=~"5.."}}[{w}])) or vector(0)), 0)'),
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def bucket_for(limit_ms: float) -> float:
    """The smallest latency bucket bound at or above ``limit_ms`` (seconds); the largest finite one past it."""
    for b in LATENCY_BUCKETS_S:
        if b * 1000.0 >= limit_ms - 1e-9:
            return b
    return LATENCY_BUCKETS_S[-1]


def scaled(window: str, scale: float) -> str:
    """A Prometheus duration divided by ``scale`` (``5m`` / 60 -> ``5s``), at least 1 s."""
    m = re.fullmatch(r"(\d+)([smhd])", window)
    assert m, window
    seconds = int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    s = max(1, round(seconds / scale))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0:
            return f"{s // n}{unit}"
    return f"{s}s"


def _sel(selector: str, extra: str = "") -> str:
    inner = ",".join(x for x in (selector, extra) if x)
    return "{" + inner + "}" if inner else ""


def _covered(slo: Slo) -> list[Series]:
    return [s for (ep, tier), s in SERIES.items() if slo.covers(ep, tier)]


def _total(series: list[Series], w: str) -> str:
    return " + ".join(f"sum(rate({s.requests}{_sel(s.selector)}[{w}]))" for s in series)


def sli_expr(slo: Slo, w: str) -> str | None:
    """The bad-event share of ``slo`` over window ``w``; None when no server metric measures it."""
    series = _covered(slo)
    if not series or slo.limit_key == "min_rps":
        return None
    if slo.limit_key in LATENCY_LIMITS:
        le = bucket_for(slo.limit)
        le_match = f'le="{le!r}"'
        good = " + ".join(f"sum(rate({s.histogram}_bucket{_sel(s.selector, le_match)}[{w}]))" for s in series)
        total = " + ".join(f"sum(rate({s.histogram}_count{_sel(s.selector)}[{w}]))" for s in series)
        return f"1 - ({good}) / ({total})"
    if slo.limit_key == "max_error_ratio":
        five_xx = 'status=~"5.."'
        bad = " + ".join(s.errors.format(w=w) if s.errors else
                         f"(sum(rate({s.requests}{_sel(s.selector, five_xx)}[{w}])) or vector(0))" for s in series)
        return f"({bad}) / ({_total(series, w)})"
    if slo.limit_key == "max_degraded_ratio":
        with_degraded = [s for s in series if s.degraded]
        if not with_degraded:
            return None
        bad = " + ".join(f"(sum(rate({s.degraded}[{w}])) or vector(0))" for s in with_degraded)
        return f"({bad}) / ({_total(with_degraded, w)})"
    return None


def budget(slo: Slo) -> float:
    if slo.limit_key in LATENCY_LIMITS:
        return round(1.0 - LATENCY_LIMITS[slo.limit_key] / 100.0, 6)
    return slo.limit


def freshness_expr(w: str) -> str:
    """Share of events not in the store within FRESHNESS_S of their timestamp.

    bad = events accepted by the ingest but not applied (accepted - applied, at least 0: a stopped or
    stuck processor makes every accepted event bad) + events applied later than FRESHNESS_S; over the larger
    of accepted and applied (applied also counts the tiers' impression events, which bypass the ingest)."""
    accepted = f"(sum(rate(strata_ingest_events_accepted_total[{w}])) or vector(0))"
    applied = f"(sum(rate(strata_processor_freshness_seconds_count[{w}])) or vector(0))"
    fresh = f'(sum(rate(strata_processor_freshness_seconds_bucket{{le="{FRESHNESS_S!r}"}}[{w}])) or vector(0))'
    return (f"(clamp_min({accepted} - {applied}, 0) + ({applied} - {fresh}))\n"
            f"/ ((({accepted} > {applied}) or {applied}) > 0)")


class _Literal(str):
    pass


def _dumper() -> type[yaml.SafeDumper]:
    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", str(v), style="|"))
    return Dumper


def _e(text: str) -> str:
    return _Literal(text) if "\n" in text else text


def build(slos: list[Slo], scale: float = 1.0) -> dict:
    def w(x: str) -> str:
        return scaled(x, scale)

    sli_rules: list[dict] = []
    budgets: list[dict] = []
    measured: list[tuple[str, str]] = []
    for slo in slos:
        if sli_expr(slo, "5m") is None:
            continue
        sid = slug(slo.name)
        labels = {"slo": sid}
        if slo.endpoint:
            labels["endpoint"] = slo.endpoint
        if slo.tier:
            labels["tier"] = slo.tier
        if slo.limit_key in LATENCY_LIMITS:
            labels["limit_s"] = repr(bucket_for(slo.limit))
        for win in WINDOWS:
            sli_rules.append({"record": f"slo:sli_error:ratio_rate{win}", "expr": _e(sli_expr(slo, w(win))),
                              "labels": dict(labels)})
        budgets.append({"record": "slo:error_budget:ratio", "expr": f"vector({budget(slo)!r})",
                        "labels": {"slo": sid}})
        measured.append((sid, slo.name))
    fresh_labels = {"slo": "freshness", "limit_s": repr(FRESHNESS_S)}
    for win in WINDOWS:
        sli_rules.append({"record": f"slo:sli_error:ratio_rate{win}", "expr": _e(freshness_expr(w(win))),
                          "labels": dict(fresh_labels)})
    budgets.append({"record": "slo:error_budget:ratio", "expr": f"vector({round(1 - FRESHNESS_OBJECTIVE, 6)!r})",
                    "labels": {"slo": "freshness"}})

    def burn(long: str, short: str, factor: float) -> str:
        return (f"(slo:sli_error:ratio_rate{long} > on(slo) group_left() ({factor!r} * slo:error_budget:ratio))\n"
                f"and on(slo)\n"
                f"(slo:sli_error:ratio_rate{short} > on(slo) group_left() ({factor!r} * slo:error_budget:ratio))")

    alerts = []
    for severity, name in (("page", "StrataSLOBurnFast"), ("ticket", "StrataSLOBurnSlow")):
        pairs = [b for b in BURN if b[3] == severity]
        expr = "\nor\n".join(f"({burn(long, short, factor)})" for long, short, factor, _, _ in pairs)
        what = ("fast: 2% of a 30-day error budget in 1 h, or 5% in 6 h" if severity == "page" else
                "slow: 10% of a 30-day error budget in 3 days, or the whole budget at this rate")
        alerts.append({"alert": name, "expr": _Literal(expr), "for": w(pairs[0][4]),
                       "labels": {"severity": severity},
                       "annotations": {"summary": "SLO {{ $labels.slo }} is burning its error budget (" + what + ")",
                                       "runbook": "docs/operations.md#alerts"}})
    ops = _ops(w)
    return {"groups": [
        {"name": "strata-slo-sli", "rules": sli_rules + budgets},
        {"name": "strata-series", "rules": _series(w)},
        {"name": "strata-slo-alerts", "rules": alerts},
        {"name": "strata-ops-alerts", "rules": ops},
    ]}


def _series(w) -> list[dict]:
    """What the dashboard plots (per tier latency, escalation share, freshness, cache hits, lag)."""
    rules = []
    for (ep, tier), s in SERIES.items():
        for q in (0.5, 0.95, 0.99):
            rules.append({"record": f"strata:request_latency_seconds:p{round(q * 100)}_rate5m",
                          "expr": f"histogram_quantile({q}, sum by (le) (rate({s.histogram}_bucket"
                                  f"{_sel(s.selector)}[{w('5m')}])))",
                          "labels": {"endpoint": ep, "tier": tier}})
        rules.append({"record": "strata:requests:rate5m",
                      "expr": f"sum(rate({s.histogram}_count{_sel(s.selector)}[{w('5m')}]))",
                      "labels": {"endpoint": ep, "tier": tier}})
        if s.degraded:
            rules.append({"record": "strata:degraded:ratio_rate5m",
                          "expr": f"(sum(rate({s.degraded}[{w('5m')}])) or vector(0)) / "
                                  f"sum(rate({s.requests}{_sel(s.selector)}[{w('5m')}]))",
                          "labels": {"endpoint": ep, "tier": tier}})
    rules += [
        {"record": "strata:escalation:share_rate5m",
         "expr": f"sum by (target) (rate(strata_router_requests_total[{w('5m')}])) / ignoring(target) "
                 f"group_left() sum(rate(strata_edge_requests_total{{route=\"/v1/recommend\"}}[{w('5m')}]))"},
        {"record": "strata:freshness_seconds:p50_rate5m",
         "expr": f"histogram_quantile(0.5, sum by (le) (rate(strata_processor_freshness_seconds_bucket[{w('5m')}])))"},
        {"record": "strata:freshness_seconds:p99_rate5m",
         "expr": f"histogram_quantile(0.99, sum by (le) (rate(strata_processor_freshness_seconds_bucket[{w('5m')}])))"},
        {"record": "strata:consumer_lag:sum", "expr": "sum(strata_processor_consumer_lag)"},
        {"record": "strata:cache_hit:ratio_rate5m",
         "expr": f"sum by (cache) (rate(strata_edge_cache_requests_total{{result=\"hit\"}}[{w('5m')}])) / "
                 f"sum by (cache) (rate(strata_edge_cache_requests_total[{w('5m')}]))"},
        {"record": "strata:llm_fallback:share_rate5m",
         "expr": f"sum(rate(strata_origin_reasoner_fallbacks_total[{w('5m')}])) / "
                 f"sum(rate(strata_origin_requests_total{{route=\"/v1/explain\"}}[{w('5m')}]))"},
        {"record": "strata:dead_lettered:rate5m",
         "expr": f"(sum(rate(strata_ingest_events_dead_lettered_total[{w('5m')}])) or vector(0)) + "
                 f"(sum(rate(strata_processor_dead_lettered_total[{w('5m')}])) or vector(0))"},
        {"record": "strata:events_accepted:rate5m",
         "expr": f"sum(rate(strata_ingest_events_accepted_total[{w('5m')}]))"},
        {"record": "strata:events_applied:rate5m",
         "expr": f"sum(rate(strata_processor_events_applied_total[{w('5m')}]))"},
    ]
    return rules


def _ops(w) -> list[dict]:
    def alert(name: str, expr: str, for_: str, severity: str, summary: str) -> dict:
        return {"alert": name, "expr": _e(expr), "for": w(for_), "labels": {"severity": severity},
                "annotations": {"summary": summary, "runbook": f"docs/operations.md#{name.lower()}"}}

    return [
        alert("StrataTargetDown", 'up{job=~"strata-.*"} == 0', "2m", "page",
              "{{ $labels.job }} at {{ $labels.instance }} cannot be scraped"),
        alert("StrataConsumerLagHigh", "sum(strata_processor_consumer_lag) > 50000", "5m", "page",
              "the stream processor is {{ $value }} records behind the events log"),
        alert("StrataConsumerLagGrowing",
              f"sum(strata_processor_consumer_lag) > 1000\nand deriv(strata:consumer_lag:sum[{w('15m')}]) > 0",
              "15m", "ticket", "consumer lag keeps growing: the processors do not keep up"),
        alert("StrataBreakerOpen", "max by (target, endpoint) (strata_router_breaker_open) == 1", "1m", "page",
              "the router's breaker to {{ $labels.target }} {{ $labels.endpoint }} is open: escalations are "
              "answered by the edge (degraded)"),
        alert("StrataDLQGrowth",
              f"sum(rate(strata_ingest_events_dead_lettered_total[{w('15m')}]))\n"
              f"/ (sum(rate(strata_ingest_events_accepted_total[{w('15m')}])) "
              f"+ sum(rate(strata_ingest_events_dead_lettered_total[{w('15m')}]))) > 0.01",
              "15m", "ticket", "over 1% of incoming events go to the dead-letter topic"),
        alert("StrataProcessorDLQGrowth", f"sum(rate(strata_processor_dead_lettered_total[{w('15m')}])) > 0",
              "15m", "ticket", "the processor dead-letters records it read from the log (a producer bypasses "
                               "the ingest's validation, or the schemas diverged)"),
        alert("StrataLLMFallbackShareHigh", "strata:llm_fallback:share_rate5m > 0.2", "15m", "ticket",
              "over 20% of explanations come from the template instead of the LLM"),
        alert("StrataCacheHitRatioLow", 'strata:cache_hit:ratio_rate5m{cache="response"} < 0.05\n'
              f"and on() sum(rate(strata_edge_cache_requests_total{{cache=\"response\"}}[{w('5m')}])) > 1",
              "30m", "ticket", "the edge's response cache hits under 5% of lookups"),
        alert("StrataEscalationShareHigh", "sum(strata:escalation:share_rate5m) > 0.5", "15m", "ticket",
              "over half of the edge's requests are escalated to an upper tier"),
        alert("StrataStoreDown", "min(strata_edge_store_up) == 0", "1m", "page",
              "an edge cannot reach the online store: its answers are degraded"),
        alert("StrataBrokerDown", "min(strata_ingest_broker_up) == 0", "1m", "page",
              "the ingest API cannot reach the events log: POST /v1/events answers 503"),
        alert("StrataEventLogReset",
              f"sum(increase(strata_ingest_log_resets_total[{w('10m')}])) > 0\n"
              f"or sum(increase(strata_processor_log_resets_total[{w('10m')}])) > 0",
              "0m", "page", "the events log was reset (a broker lost its log, or the topic was recreated): "
                            "events no ingest kept are lost"),
        alert("StrataEventsUnapplied", f"sum(increase(strata_ingest_events_unapplied_total[{w('15m')}])) > 0",
              "0m", "page", "events answered 202 were appended again after a log reset and never applied"),
    ]


def render(slos: list[Slo], scale: float = 1.0, source: str = "loadtest/slo-production.yaml") -> str:
    head = (f"# Generated by `python -m strata.deploy.observability.rules` from {source}"
            + (f" with every window divided by {scale:g}" if scale != 1 else "") + ": do not edit by hand.\n")
    return head + yaml.dump(build(slos, scale), Dumper=_dumper(), sort_keys=False, width=200)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slo", type=Path, default=PRODUCTION_FILE)
    ap.add_argument("--scale", type=float, default=1.0, help="divide every window and for: by this")
    ap.add_argument("--out", type=Path, default=None, help="default: print")
    args = ap.parse_args(argv)
    text = render(load_slos(args.slo), args.scale,
                  "loadtest/slo-production.yaml" if args.slo == PRODUCTION_FILE else str(args.slo))
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
