"""The router's cost point of ``strata bench edge``: the same edge with and without its router, against an upper
tier that answers at once (``loadtest.fake_upstream``, its own process on the load generator's core).

Both edges run with ``t_edge = 1`` (every answer is below the threshold: every request routes up) on the
cache-miss workload (every request a new session, so no cached answer), one with the router pointed at the
fake upstream (``max_escalation_share = 1``: every request escalated), one without. The router's own CPU per
escalated request is the difference of the two edges' CPU per request (``/proc`` ticks over the point, divided
by the requests the edge counted in its own /metrics over the same span), divided by the escalated share; its
latency is the difference of the client-side latencies at one connection (no queueing). The two edges
are loaded at the same time on the same core (4 connections each), so whatever else a shared machine runs
slows both alike; three such rounds, the median difference is kept. The escalation log
line is written (INFO), as in production.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from strata.loadtest.bench_http import HttpPlan
from strata.loadtest.servers import (
    Cores,
    PinnedServer,
    edge_command,
    free_port,
    http_get,
    process_ticks,
    run_loadgen,
)
from strata.shared.models.bundle import ITEMS_FILE, read_current

logger = logging.getLogger(__name__)
_HZ = os.sysconf("SC_CLK_TCK")
BOUND_US = 150.0
MODEL = "edge-scorer"
_COUNTER = re.compile(r'^(strata_edge_requests_total\{route="/v1/recommend",status="200"\}|'
                      r'strata_router_requests_total\{outcome="answered",target="origin"\})\s+([0-9.eE+]+)', re.M)


def _counts(port: int) -> tuple[float, float]:
    """(recommend answers, escalations the origin answered) from the edge's /metrics."""
    _, body = http_get(port, "/metrics", timeout=5.0)
    found = {m.group(1): float(m.group(2)) for m in _COUNTER.finditer(body.decode(errors="replace"))}
    return (found.get('strata_edge_requests_total{route="/v1/recommend",status="200"}', 0.0),
            found.get('strata_router_requests_total{outcome="answered",target="origin"}', 0.0))


def _config(path: Path, upstream: str | None) -> Path:
    router = {"origin_urls": [upstream], "streaming_urls": [upstream], "max_escalation_share": 1.0} if upstream \
        else {}
    path.write_text(yaml.safe_dump({"edge": {"confidence": {"t_edge": 1.0}}, "router": router}))
    return path


def _cpu_point(server: PinnedServer, workload: str, plan: HttpPlan, cores: Cores, conns: int) -> dict:
    n0, esc0 = _counts(server.port)
    t0 = process_ticks(server.pid)
    r = run_loadgen(server.port, workload, conns, plan.duration_s, plan.warmup_s, cores.loadgen)
    ticks = process_ticks(server.pid) - t0
    n1, esc1 = _counts(server.port)
    n = n1 - n0
    return {"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors": r["errors"] + r["non_2xx"],
            "cpu_us_per_request": ticks / _HZ / n * 1e6 if n else None,
            "escalated_share": (esc1 - esc0) / n if n else None}


def _side_by_side(edges: dict[str, PinnedServer], workload: str, plan: HttpPlan, cores: Cores) -> dict[str, dict]:
    """Both edges loaded at once (4 connections each, on the same server core): whatever else the machine runs
    meanwhile slows both alike, so their difference is the router's."""
    with ThreadPoolExecutor(len(edges)) as pool:
        futures = {label: pool.submit(_cpu_point, srv, workload, plan, cores, 4) for label, srv in edges.items()}
        return {label: f.result() for label, f in futures.items()}


def upstream_items(registry: str, k: int = 10, per_category: int = 2) -> list[str]:
    """What the fake upper tier answers: popular catalog items the edge's guardrails keep (no age-restricted
    item, at most ``per_category`` of a category), as a real upper tier's answer would be."""
    path = Path(registry) / MODEL / read_current(registry, MODEL) / ITEMS_FILE
    t = pq.read_table(path, columns=["item_id", "category", "age_restricted", "popularity"]).to_pylist()
    t.sort(key=lambda row: -(row["popularity"] or 0))
    out: list[str] = []
    seen: dict[str, int] = {}
    for row in t:
        if row["age_restricted"] or seen.get(row["category"], 0) >= per_category:
            continue
        seen[row["category"]] = seen.get(row["category"], 0) + 1
        out.append(row["item_id"])
        if len(out) == k:
            break
    return out


def run(registry: str, unique_workload: str, plan: HttpPlan, cores: Cores, workdir: Path, rounds: int = 3) -> dict:
    """Both edges up; at 8 connections (CPU per request) plain and routed in turn ``rounds`` times, then at one
    connection (latency)."""
    out: dict = {}
    with ExitStack() as stack:
        port = free_port()
        fake = stack.enter_context(PinnedServer(
            "fake-upstream", [sys.executable, "-m", "strata.loadtest.fake_upstream", "--port", str(port),
                              "--items", ",".join(upstream_items(registry))], port, cores.loadgen))
        edges: dict[str, PinnedServer] = {}
        for label, upstream in (("edge_plain", None), ("edge_routed", f"http://127.0.0.1:{fake.port}")):
            cfg = _config(workdir / f"{label}.yaml", upstream)
            port = free_port()
            edges[label] = stack.enter_context(
                PinnedServer(label, [*edge_command(registry, port), "--config", str(cfg)], port, cores.server))
        # CPU: plain and routed at the same time on the same core, ``rounds`` times (the median difference is kept)
        diffs: list[float] = []
        for i in range(rounds):
            pair = _side_by_side(edges, unique_workload, plan, cores)
            share = pair["edge_routed"]["escalated_share"]
            if pair["edge_plain"]["cpu_us_per_request"] and pair["edge_routed"]["cpu_us_per_request"] and share:
                diffs.append((pair["edge_routed"]["cpu_us_per_request"] - pair["edge_plain"]["cpu_us_per_request"])
                             / share)
            logger.info("router point round %d: %s", i + 1, pair)
            if i == 0:
                for label, p in pair.items():
                    out.update({f"{label}_{k}_c4x2": v for k, v in p.items()})
        out["router_cpu_us_rounds"] = [round(d, 1) for d in diffs]
        if diffs:
            out["router_cpu_us_per_escalation"] = statistics.median(diffs)
        for label, srv in edges.items():        # latency without queueing: one connection
            p = _cpu_point(srv, unique_workload, plan, cores, 1)
            out.update({f"{label}_{k}_c1": v for k, v in p.items()})
    for q in ("p50", "p99"):
        a, b = out.get(f"edge_plain_{q}_ms_c1"), out.get(f"edge_routed_{q}_ms_c1")
        if a is not None and b is not None:
            out[f"router_latency_us_per_escalation_{q}"] = (b - a) * 1000
    return out
