"""Low-overhead instruments exposed in Prometheus format.

The hot path increments plain Python numbers (tens of nanoseconds); a custom collector turns them
into Prometheus families only when /metrics is scraped. Observability never breaks a request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    __slots__ = ("bounds", "counts", "total", "n")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect_left(self.bounds, v)] += 1
        self.total += v
        self.n += 1

    def observe_many(self, values: np.ndarray) -> None:
        """``observe`` of every value at once (the same buckets: a value equal to a bound counts in it)."""
        values = np.asarray(values, dtype=np.float64)
        if not values.size:
            return
        per = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        for i, c in enumerate(per.tolist()):
            self.counts[i] += c
        self.total += float(values.sum())
        self.n += int(values.size)


class Instruments:
    """Counters, gauges and histograms keyed by (name, label tuple)."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.counters: dict[tuple[str, tuple], float] = {}
        self.histograms: dict[tuple[str, tuple], Histogram] = {}
        self.gauges: dict[str, tuple[Callable[[], list[tuple[tuple, float]]], bool]] = {}
        self.help: dict[str, tuple[str, tuple[str, ...]]] = {}

    def define(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.help[name] = (help_text, labels)

    def inc(self, name: str, labels: tuple = (), by: float = 1.0) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + by

    def histogram(self, name: str, labels: tuple = ()) -> Histogram:
        key = (name, labels)
        h = self.histograms.get(key)
        if h is None:
            h = self.histograms[key] = Histogram()
        return h

    def gauge(self, name: str, fn: Callable[[], list[tuple[tuple, float]]], counter: bool = False) -> None:
        """A series read at scrape time; ``counter=True`` exposes a monotonic value as a counter."""
        self.gauges[name] = (fn, counter)

    def collect(self) -> Iterator[Metric]:  # prometheus_client Collector protocol
        seen: dict[str, Any] = {}       # name -> its family (a counter, histogram or gauge family)
        for (name, labels), v in sorted(self.counters.items()):
            fam = seen.get(name)
            if fam is None:
                text, lnames = self.help.get(name, (name, ()))
                fam = seen[name] = CounterMetricFamily(f"{self.ns}_{name}", text, labels=list(lnames))
            fam.add_metric(list(labels), v)
        for (name, labels), h in sorted(self.histograms.items(), key=lambda kv: kv[0]):
            fam = seen.get(name)
            if fam is None:
                text, lnames = self.help.get(name, (name, ()))
                fam = seen[name] = HistogramMetricFamily(f"{self.ns}_{name}", text, labels=list(lnames))
            cum, buckets = 0, []
            for bound, c in zip([*h.bounds, float("inf")], h.counts, strict=True):
                cum += c
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cum))
            fam.add_metric(list(labels), buckets, h.total)
        for name, (fn, counter) in self.gauges.items():
            text, lnames = self.help.get(name, (name, ()))
            family = CounterMetricFamily if counter else GaugeMetricFamily
            fam = family(f"{self.ns}_{name}", text, labels=list(lnames))
            try:
                for labels, v in fn():
                    fam.add_metric(list(labels), v)
            except Exception:  # a broken gauge must not break the scrape
                continue
            seen[name] = fam
        yield from seen.values()

    def exposition(self) -> bytes:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(self)
        return generate_latest(reg)
