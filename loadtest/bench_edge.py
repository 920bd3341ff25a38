"""``strata bench edge``: the edge against two baselines and MABWiser, in one run, on pinned cores.

(a) in-process decision latency, (b) edge HTTP req/s and latency at 8 and 64 connections,
(c) lean raw-ASGI and FastAPI baselines on the same bundle and payloads, (d) Thompson decisions/s
against MABWiser, (e) the router's own CPU and latency per escalated request (``loadtest.bench_router``). Prints a table with the issue's targets and PASS/MISS, and writes JSON.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import orjson

from strata.loadtest import bench_bandit, bench_http, bench_inproc, bench_router
from strata.loadtest.bench_report import (
    TARGETS,
    add_ratios,
    machine_info,
    print_report,
    verdict,
)
from strata.loadtest.launch import Launcher
from strata.loadtest.payloads import load_catalog
from strata.loadtest.servers import pick_cores

logger = logging.getLogger(__name__)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _pinned_to(core: int):
    """Run in-process measurements on the server core, then restore the old mask."""
    class _Pin:
        def __enter__(self) -> None:
            self.old = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {core})

        def __exit__(self, *exc: object) -> None:
            os.sched_setaffinity(0, self.old)
    return _Pin()


def main(launcher: Launcher, registry: str, json_path: str | None = None, duration: float = 10.0, quick: bool = False) -> dict:
    """Run the whole benchmark; returns the result dict (also written to ``json_path``)."""
    started = time.perf_counter()
    registry = str(Path(registry).resolve())
    cores = pick_cores()
    if quick:
        duration = min(duration, 1.5)
    warmup = 0.5 if quick else 2.0
    plan = bench_http.HttpPlan(duration, warmup, cached_bodies=2048 if quick else 16384,
                               unique_bodies=1024 if quick else 8192, auth_rounds=1 if quick else 3)
    r: dict = {**machine_info(), "loadavg_before": _loadavg(), "registry": registry, "quick": quick,
               "duration_s": duration, "warmup_s": warmup, "server_core": cores.server,
               "loadgen_core": cores.loadgen, "pinned_separately": cores.separate}
    if not cores.separate:
        logger.warning("only one core available: server and load generator share it")
    catalog = load_catalog(registry)
    t0 = time.perf_counter()
    with _pinned_to(cores.server):
        r.update(bench_inproc.run(registry, catalog, iterations=500 if quick else 20000,
                                  warmup=100 if quick else 2000))
        r["inproc_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        r.update(bench_bandit.run(seconds=0.3 if quick else 2.0))
        r["bandit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as workdir:
        r.update(bench_http.run(launcher, registry, catalog, plan, cores, Path(workdir)))
        r["http_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:        # the router's cost: the same edge with and without it, against an upstream answering at once
            r.update(bench_router.run(registry, str(Path(workdir) / "unique.workload"), plan, cores, Path(workdir),
                                      rounds=1 if quick else 3))
        except Exception as exc:  # the table then says n/a (a missed target); the error is kept in the JSON
            logger.error("router point failed: %s", exc)
            r["router_error"] = f"{type(exc).__name__}: {exc}"[-2000:]
        r["router_s"] = time.perf_counter() - t0
    add_ratios(r)
    r["targets"] = {t.key: verdict(t, r.get(t.key))[0] for t in TARGETS}
    r["loadavg_after"] = _loadavg()
    r["total_s"] = time.perf_counter() - started
    print_report(r)
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return r
