"""What the tiers' own ``/metrics`` say over a load test's window: scraped before and after, differenced.

The per-tier comparison of ``strata loadtest`` puts these next to Locust's own counts: requests answered by
each tier and degraded answers (they must agree within 10%), plus the servers' latency percentiles from
their histograms (server time only: the client's figure adds the network and the load generator).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

# Per answering tier: its recommend counter and filter, degraded counter, latency histogram and filter.
RECOMMEND = {
    "edge": ("strata_edge_requests_total", {"route": "/v1/recommend"}),
    "streaming": ("strata_tier2_requests_total", {}),
    "origin": ("strata_origin_requests_total", {"route": "/v1/recommend"}),
}
DEGRADED = {"edge": "strata_edge_degraded_total", "streaming": "strata_tier2_degraded_total"}
LATENCY = {
    ("recommend", "edge"): ("strata_edge_request_seconds", {"route": "/v1/recommend"}),
    ("recommend", "streaming"): ("strata_tier2_request_seconds", {}),
    ("recommend", "origin"): ("strata_origin_request_seconds", {"route": "/v1/recommend"}),
    ("explain", "origin"): ("strata_origin_request_seconds", {"route": "/v1/explain"}),
    ("events", "streaming"): ("strata_ingest_request_seconds", {}),
}
COUNTS = {
    ("explain", "origin"): ("strata_origin_requests_total", {"route": "/v1/explain"}),
    ("events", "streaming"): ("strata_ingest_request_seconds_count", {}),   # requests_total counts every route
}
# Escalations the edge's router handed to an upper tier and got answered, and upper tiers' answers the edge served
# again from its cache (``router.answer_ttl_s``): both are counted by the edge and reach the client with the upper
# tier's name, so the edge's own answers are the difference; a cached one is also the upper tier's answer, which
# that tier's own counter does not see again.
ROUTER = "strata_router_requests_total"
ROUTER_ANSWERED = ("answered", "cached")
ROUTER_DEGRADED = "strata_router_degraded_total"     # of those, the ones passed on with degraded=true


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(url: str, timeout_s: float = 5.0) -> Samples:
    with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=timeout_s) as resp:
        return parse(resp.read().decode())


def scrape_all(hosts: Mapping[str, str]) -> dict[str, Samples]:
    """Each tier's samples; a tier that cannot be scraped is left out (shown as n/a)."""
    out = {}
    for tier, url in hosts.items():
        if not url:
            continue
        try:
            out[tier] = scrape(url)
        except OSError:
            continue
    return out


def total(samples: Samples, name: str, match: Mapping[str, str]) -> float:
    return sum(v for (n, labels), v in samples.items()
               if n == name and all(dict(labels).get(k) == want for k, want in match.items()))


def delta(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> float:
    return total(after, name, match) - total(before, name, match)


def histogram_delta(before: Samples, after: Samples, name: str, match: Mapping[str, str]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the histogram's increase, summed over matching series."""
    bounds: dict[float, float] = {}
    for samples, sign in ((after, 1.0), (before, -1.0)):
        for (n, labels), v in samples.items():
            if n != f"{name}_bucket":
                continue
            d = dict(labels)
            if not all(d.get(k) == want for k, want in match.items()):
                continue
            le = float(d["le"])
            bounds[le] = bounds.get(le, 0.0) + sign * v
    return sorted(bounds.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket (seconds)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


@dataclass(frozen=True, slots=True)
class ServerWindow:
    before: dict[str, Samples]
    after: dict[str, Samples]

    def _pair(self, tier: str) -> tuple[Samples, Samples] | None:
        if tier not in self.before or tier not in self.after:
            return None
        return self.before[tier], self.after[tier]

    def answered(self, tier: str) -> float | None:
        """Recommend answers given by ``tier`` over the window: the edge's minus those its router got from (or
        served again for) an upper tier; an upper tier's own plus its answers the edge served again."""
        pair = self._pair(tier)
        if pair is None:
            return None
        name, match = RECOMMEND[tier]
        n = delta(*pair, name, match)
        edge = self._pair("edge")
        if tier == "edge":
            n -= sum(delta(*pair, ROUTER, {"outcome": o}) for o in ROUTER_ANSWERED)
        elif edge is not None:
            n += delta(*edge, ROUTER, {"outcome": "cached", "target": tier})
        return n

    def degraded(self, tier: str) -> float | None:
        """Degraded answers ``tier`` gave itself (the edge's minus the upper tiers' it passed on)."""
        pair = self._pair(tier)
        if pair is None or tier not in DEGRADED:
            return None
        n = delta(*pair, DEGRADED[tier], {})
        if tier == "edge":
            n -= delta(*pair, ROUTER_DEGRADED, {})
        return n

    def count(self, endpoint: str, tier: str) -> float | None:
        if endpoint == "recommend":
            return self.answered(tier)
        pair = self._pair(tier)
        if pair is None or (endpoint, tier) not in COUNTS:
            return None
        return delta(*pair, *COUNTS[(endpoint, tier)])

    def latency_ms(self, endpoint: str, tier: str, q: float) -> float | None:
        pair = self._pair(tier)
        if pair is None or (endpoint, tier) not in LATENCY:
            return None
        name, match = LATENCY[(endpoint, tier)]
        v = quantile(q, histogram_delta(*pair, name, match))
        return None if v is None else v * 1000.0
