"""HTTP points of the edge benchmark: each server pinned to one core, the load generator on another.

Order of one run: at 8 then 64 connections, the load-generator ceiling (trivial server), the lean
baseline, the FastAPI baseline and the edge on the cached mix; then the edge with msgpack, then the
edge on cache misses only. All servers get the same JSON bodies; the edge's cache hit ratio over its
cached-mix points is read from /metrics when it exports hit/miss counters.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from strata.loadtest.bench_store import seed_store, start_store
from strata.loadtest.launch import Launcher
from strata.loadtest.loadgen import Workload, save_workload
from strata.loadtest.payloads import (
    Catalog,
    cached_mix,
    encode_json,
    encode_msgpack,
    repeat_share,
    unique_mix,
)
from strata.loadtest.servers import (
    Cores,
    PinnedServer,
    baseline_command,
    core_busy_ticks,
    edge_command,
    free_port,
    http_get,
    process_ticks,
    run_loadgen,
    trivial_command,
)
from strata.shared.serving.codecs import JSON, MSGPACK

logger = logging.getLogger(__name__)
PATH = "/v1/recommend"
CONNECTIONS = (8, 64)
# The edge says per response whether its response cache answered ("timing": {"cache": "hit"}).
HIT_JSON = b'"cache":"hit"'
HIT_MSGPACK = b"\xa5cache\xa3hit"
_HZ = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


@dataclass(frozen=True, slots=True)
class HttpPlan:
    duration_s: float
    warmup_s: float
    cached_bodies: int
    unique_bodies: int
    auth_rounds: int = 3        # auth on / off pairs per workload (the median pair's ratio is the target)


def prepare_workloads(catalog: Catalog, plan: HttpPlan, workdir: Path) -> dict[str, str | float]:
    """Write the three workloads (cached JSON, cached msgpack, unique JSON) for the load generator."""
    cached = cached_mix(catalog, plan.cached_bodies)
    unique = unique_mix(catalog, plan.unique_bodies)
    files = {
        "cached": Workload(PATH, JSON, encode_json(cached)),
        "msgpack": Workload(PATH, MSGPACK, encode_msgpack(cached), accept=MSGPACK),
        "unique": Workload(PATH, JSON, encode_json(unique)),
    }
    out: dict[str, str | float] = {"payload_repeat_share": repeat_share(cached)}
    for name, wl in files.items():
        path = workdir / f"{name}.workload"
        save_workload(wl, str(path))
        out[name] = str(path)
    return out


def cache_counts(metrics_text: str) -> tuple[float, float] | None:
    """(hits, misses) summed over the response-cache counters in a Prometheus exposition, if any.

    Accepts either ``*cache*hit*`` / ``*cache*miss*`` counters, or one ``*cache*`` counter with a
    ``result``/``outcome`` label of hit/miss. Only the response cache counts when it is named apart.
    """
    hits = misses = 0.0
    found = False
    for line in metrics_text.splitlines():
        m = _SAMPLE.match(line)
        if not m or "cache" not in m.group(1) or m.group(1).endswith(("_created", "_ratio")):
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if "session" in name or "session" in labels:
            continue
        text = name + labels
        if "hit" in text:
            hits += value
            found = True
        elif "miss" in text:
            misses += value
            found = True
    return (hits, misses) if found else None


def _scrape_cache(port: int, results: dict) -> tuple[float, float] | None:
    """Response-cache counters from /metrics; a failed scrape is noted in ``edge_metrics_scrape``."""
    try:
        status, body = http_get(port, "/metrics")
    except OSError as exc:
        results["edge_metrics_scrape"] = f"{type(exc).__name__}: {exc}"
        return None
    if status != 200:
        results["edge_metrics_scrape"] = f"HTTP {status}"
        return None
    counts = cache_counts(body.decode(errors="replace"))
    results["edge_metrics_scrape"] = "ok" if counts is not None else "no cache hit/miss counters"
    return counts


def _record(results: dict, label: str, conns: int, r: dict, counted: bool) -> None:
    results[f"{label}_rps_c{conns}"] = r["rps"]
    results[f"{label}_p50_ms_c{conns}"] = r["p50_ms"]
    results[f"{label}_p99_ms_c{conns}"] = r["p99_ms"]
    results[f"{label}_p999_ms_c{conns}"] = r["p999_ms"]
    results[f"{label}_requests_c{conns}"] = r["requests"]
    results[f"{label}_errors_c{conns}"] = r["errors"]
    results[f"{label}_non2xx_c{conns}"] = r["non_2xx"]
    if counted:
        results[f"{label}_hit_share_c{conns}"] = r["matched"] / r["requests"] if r["requests"] else None
    logger.info("%s c%d: %.0f req/s p99 %.2f ms (%d errors, %d non-2xx)", label, conns, r["rps"],
                r["p99_ms"], r["errors"], r["non_2xx"])


def _point(server: PinnedServer, results: dict, label: str, workload: str, plan: HttpPlan, cores: Cores,
           conns: int, hit_pattern: bytes | None = None) -> None:
    """One measurement, plus the server's own CPU share (about 100% = the server was the limit) and
    how much of its core other processes took meanwhile."""
    t0, busy0, own0 = time.monotonic(), core_busy_ticks(cores.server), process_ticks(server.pid)
    r = run_loadgen(server.port, workload, conns, plan.duration_s, plan.warmup_s, cores.loadgen, hit_pattern)
    wall, busy, own = time.monotonic() - t0, core_busy_ticks(cores.server) - busy0, process_ticks(server.pid) - own0
    _record(results, label, conns, r, hit_pattern is not None)
    # shares of the whole point (load-generator start and warm-up included, so slightly diluted)
    results[f"{label}_server_cpu_c{conns}"] = own / _HZ / wall
    results[f"{label}_foreign_cpu_c{conns}"] = max(busy - own, 0) / _HZ / wall


def _hit_ratio(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses else None


def _start(stack: ExitStack, name: str, argv_for_port, core: int) -> PinnedServer:
    port = free_port()
    return stack.enter_context(PinnedServer(name, argv_for_port(port), port, core))


def run(launcher: Launcher, registry: str, catalog: Catalog, plan: HttpPlan, cores: Cores, workdir: Path) -> dict:
    """All HTTP points. Every server is up (idle ones cost nothing) and the points are interleaved,
    so a change in background load on a shared machine hits all servers alike."""
    files = prepare_workloads(catalog, plan, workdir)
    cached, msgpack_wl, unique = str(files["cached"]), str(files["msgpack"]), str(files["unique"])
    results: dict = {"payload_repeat_share": files["payload_repeat_share"],
                     "payload_cached_bodies": plan.cached_bodies, "payload_unique_bodies": plan.unique_bodies}
    with ExitStack() as stack:
        servers = {
            "loadgen_ceiling": _start(stack, "trivial", trivial_command, cores.server),
            "lean": _start(stack, "lean", lambda p: baseline_command("lean_asgi", registry, p), cores.server),
            "fastapi": _start(stack, "fastapi", lambda p: baseline_command("fastapi_app", registry, p),
                              cores.server),
        }
        try:
            servers["edge"] = _start(stack, "edge", lambda p: edge_command(registry, p), cores.server)
        except Exception as exc:  # the table then says n/a; the error is kept in the JSON
            logger.error("edge did not start: %s", exc)
            results["edge_error"] = f"{type(exc).__name__}: {exc}"[-2000:]
        edge = servers.get("edge")
        before = _scrape_cache(edge.port, results) if edge else None
        for conns in CONNECTIONS:
            for label, srv in servers.items():
                _point(srv, results, label, cached, plan, cores, conns, HIT_JSON if label == "edge" else None)
        if edge is None:
            return results
        results["edge_cache_hit_ratio"] = _hit_ratio(before, _scrape_cache(edge.port, results))
        _point(edge, results, "edge_msgpack", msgpack_wl, plan, cores, 8, HIT_MSGPACK)
        before = _scrape_cache(edge.port, results)
        for conns in CONNECTIONS:
            _point(edge, results, "edge_nocache", unique, plan, cores, conns, HIT_JSON)
        results["edge_nocache_cache_hit_ratio"] = _hit_ratio(before, _scrape_cache(edge.port, results))
        # The same edge service under uvicorn: what the edge's own HTTP server buys over an ASGI server.
        try:
            uv = _start(stack, "edge-uvicorn", lambda p: edge_command(registry, p, "uvicorn"), cores.server)
        except Exception as exc:
            logger.error("edge under uvicorn did not start: %s", exc)
            results["edge_uvicorn_error"] = f"{type(exc).__name__}: {exc}"[-2000:]
            return results
        _point(uv, results, "edge_uvicorn", cached, plan, cores, 8, HIT_JSON)
        _point(uv, results, "edge_uvicorn_nocache", unique, plan, cores, 8, HIT_JSON)
        _auth_points(stack, results, registry, edge, catalog, plan, cores, workdir)
        # The edge with a real store: session reads on the request path, counts refreshed in the background.
        try:
            valkey = stack.enter_context(start_store(launcher, cores.loadgen))
            results.update(seed_store(valkey, catalog))
            with_store = _start(stack, "edge-store", lambda p: edge_command(registry, p, store=valkey.url),
                                cores.server)
        except Exception as exc:
            logger.error("edge with a store did not start: %s", exc)
            results["edge_store_error"] = f"{type(exc).__name__}: {exc}"[-2000:]
            return results
        _point(with_store, results, "edge_store", cached, plan, cores, 8, HIT_JSON)
        _point(with_store, results, "edge_store_nocache", unique, plan, cores, 8, HIT_JSON)
        results.update(_refresh_stats(with_store.port))
    return results


def _auth_points(stack: ExitStack, results: dict, registry: str, edge: PinnedServer, catalog: Catalog,
                 plan: HttpPlan, cores: Cores, workdir: Path) -> None:
    """The edge with ``auth.enabled`` (a key per request, signed impression ids) against the same edge without,
    measured back to back on the cached mix and on cache misses (what auth costs per request)."""
    import secrets

    from strata.shared.auth.keys import create_key

    key, _ = create_key(workdir / "keys.json", "default", ("recommend",))
    env = {"STRATA_AUTH__ENABLED": "true", "STRATA_AUTH__KEYS_FILE": str(workdir / "keys.json"),
           "STRATA_AUTH__IMPRESSION_SECRET": secrets.token_hex(32)}
    try:
        port = free_port()
        auth = stack.enter_context(PinnedServer("edge-auth", edge_command(registry, port), port, cores.server,
                                                env=env))
    except Exception as exc:
        logger.error("edge with auth did not start: %s", exc)
        results["edge_auth_error"] = f"{type(exc).__name__}: {exc}"[-2000:]
        return
    paths = {}
    for name, mix in (("cached", cached_mix(catalog, plan.cached_bodies)),
                      ("unique", unique_mix(catalog, plan.unique_bodies))):
        paths[name] = str(workdir / f"{name}-auth.workload")
        save_workload(Workload(PATH, JSON, encode_json(mix), authorization=f"Bearer {key}"), paths[name])
        paths[name + "-off"] = str(workdir / f"{name}.workload")
    # the edge measured before has seen the cached mix for minutes: give this one the same warm caches first
    _point(auth, {}, "edge_auth_warmup", paths["cached"], plan, cores, 8, HIT_JSON)
    for name, suffix in (("cached", ""), ("unique", "_nocache")):
        ratios, rps = [], {"edge_authoff": [], "edge_auth": []}
        for i in range(plan.auth_rounds):       # off then on, on then off, ...: drift hits both alike
            pair = (("edge_authoff", edge, paths[name + "-off"]), ("edge_auth", auth, paths[name]))
            for label, srv, wl in pair if i % 2 == 0 else pair[::-1]:
                _point(srv, results, f"{label}{suffix}", wl, plan, cores, 8, HIT_JSON)
                rps[label].append(results[f"{label}{suffix}_rps_c8"])
            ratios.append(rps["edge_auth"][-1] / rps["edge_authoff"][-1] if rps["edge_authoff"][-1] else 0.0)
        # the table shows the last round's points with the median req/s; the target is the median round's ratio
        for label, values in rps.items():
            results[f"{label}{suffix}_rps_c8"] = statistics.median(values)
            results[f"{label}{suffix}_rps_rounds_c8"] = values
        results[f"edge_auth{suffix}_ratio_rounds_c8"] = ratios


def _refresh_stats(port: int) -> dict:
    """What the edge's background refresher did during the store points (from its /metrics)."""
    try:
        status, body = http_get(port, "/metrics")
    except OSError as exc:
        return {"edge_store_metrics": f"{type(exc).__name__}: {exc}"}
    values: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) in ("strata_edge_bandit_slots_tracked", "strata_edge_bandit_fields_read_total",
                                "strata_edge_bandit_refresh_seconds_sum", "strata_edge_bandit_refresh_seconds_count",
                                "strata_edge_store_up"):
            values[m.group(1)] = float(m.group(3))
    n = values.get("strata_edge_bandit_refresh_seconds_count") or 0.0
    return {"edge_store_slots_tracked": values.get("strata_edge_bandit_slots_tracked"),
            "edge_store_refreshes": n,
            "edge_store_refresh_mean_ms": values["strata_edge_bandit_refresh_seconds_sum"] / n * 1e3 if n else None,
            "edge_store_fields_read": values.get("strata_edge_bandit_fields_read_total"),
            "edge_store_up": values.get("strata_edge_store_up")}
