"""Targets, machine facts and the printed table of ``strata bench edge``. Prints the truth: a missed
target says MISS and by how much."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    key: str
    op: str            # ">=" or "<="
    bound: float
    unit: str
    headline: bool = True   # False: shown for context, not one of the targets


TARGETS = (
    Target("edge / lean req/s, c8", "ratio_edge_over_lean_c8", ">=", 2.0, "x"),
    Target("edge / fastapi req/s, c8", "ratio_edge_over_fastapi_c8", ">=", 3.0, "x"),
    Target("edge p99, c8", "edge_p99_ms_c8", "<=", 5.0, "ms"),
    Target("in-process p99, 100 candidates", "inproc_p99_us_100", "<=", 150.0, "µs"),
    Target("Thompson / MABWiser decisions/s (single)", "ratio_ts_over_mabwiser", ">=", 30.0, "x"),
    Target("router CPU per escalated request", "router_cpu_us_per_escalation", "<=", 150.0, "µs"),
    Target("edge cache misses only / lean, c8", "ratio_edge_nocache_over_lean_c8", ">=", 2.0, "x", False),
    Target("edge cache misses only / fastapi, c8", "ratio_edge_nocache_over_fastapi_c8", ">=", 3.0, "x", False),
    Target("edge auth on / off req/s, cached mix, c8", "ratio_edge_auth_over_off_c8", ">=", 0.9, "x", False),
    Target("edge auth on / off req/s, cache misses, c8", "ratio_edge_auth_nocache_over_off_c8", ">=", 0.9, "x",
           False),
)

HTTP_ROWS = (
    ("loadgen ceiling (trivial server)", "loadgen_ceiling"),
    ("lean raw ASGI + orjson", "lean"),
    ("FastAPI + pydantic", "fastapi"),
    ("edge, cached mix, JSON", "edge"),
    ("edge, cached mix, msgpack", "edge_msgpack"),
    ("edge, cache misses only", "edge_nocache"),
    ("edge under uvicorn, cached mix, JSON", "edge_uvicorn"),
    ("edge under uvicorn, cache misses only", "edge_uvicorn_nocache"),
    ("edge + Valkey (sessions, counts), cached mix", "edge_store"),
    ("edge + Valkey (sessions, counts), cache misses only", "edge_store_nocache"),
    ("edge, auth off (next to the auth point), cached mix", "edge_authoff"),
    ("edge, auth on (key, signed impression ids), cached mix", "edge_auth"),
    ("edge, auth off (next to the auth point), cache misses", "edge_authoff_nocache"),
    ("edge, auth on (key, signed impression ids), cache misses", "edge_auth_nocache"),
)


def machine_info() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu_model": model, "nproc": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def add_ratios(r: dict) -> None:
    def ratio(a: str, b: str) -> float | None:
        x, y = r.get(a), r.get(b)
        return x / y if x and y else None

    for suffix in ("", "_nocache"):     # auth on / off: the median of the back-to-back pairs, when there are rounds
        rounds = r.get(f"edge_auth{suffix}_ratio_rounds_c8")
        r[f"ratio_edge_auth{suffix}_over_off_c8"] = statistics.median(rounds) if rounds else \
            ratio(f"edge_auth{suffix}_rps_c8", f"edge_authoff{suffix}_rps_c8")
    for c in (8, 64):
        r[f"ratio_edge_over_lean_c{c}"] = ratio(f"edge_rps_c{c}", f"lean_rps_c{c}")
        r[f"ratio_edge_over_fastapi_c{c}"] = ratio(f"edge_rps_c{c}", f"fastapi_rps_c{c}")
        r[f"ratio_edge_nocache_over_lean_c{c}"] = ratio(f"edge_nocache_rps_c{c}", f"lean_rps_c{c}")
        r[f"ratio_edge_nocache_over_fastapi_c{c}"] = ratio(f"edge_nocache_rps_c{c}", f"fastapi_rps_c{c}")
        # how far the generator's own ceiling sits above the fastest server measured with it
        served = [r.get(f"{s}_rps_c{c}") or 0.0 for s in ("lean", "fastapi", "edge", "edge_nocache")]
        ceiling = r.get(f"loadgen_ceiling_rps_c{c}")
        r[f"loadgen_headroom_c{c}"] = ceiling / max(served) if ceiling and max(served) else None


def missed_targets(r: dict) -> list[str]:
    """Headline targets that were missed or could not be measured (the bench then exits non-zero)."""
    return [t.label for t in TARGETS if t.headline and verdict(t, r.get(t.key))[0] != "PASS"]


def verdict(t: Target, value: float | None) -> tuple[str, str]:
    """('PASS'|'MISS'|'n/a', how far from the bound)."""
    if value is None:
        return "n/a", "not measured"
    ok = value >= t.bound if t.op == ">=" else value <= t.bound
    if ok:
        return "PASS", ""
    if t.op == ">=":
        return "MISS", f"{value / t.bound:.0%} of target ({t.bound - value:.3g}{t.unit} short)"
    return "MISS", f"{value / t.bound:.2f}x the bound ({value - t.bound:.3g}{t.unit} over)"


def _f(v: object, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def print_report(r: dict, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console.width = max(console.width, 160)  # pipes and logs get the whole table
    t = Table(title=f"HTTP, server on core {r.get('server_core')}, load generator on core "
                    f"{r.get('loadgen_core')} ({r.get('duration_s')} s per point)")
    for col in ("server", "conns", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "non-2xx", "cache hits",
                "server CPU", "others on core"):
        t.add_column(col, justify="left" if col == "server" else "right")
    for title, label in HTTP_ROWS:
        for c in (8, 64):
            if f"{label}_rps_c{c}" not in r:
                continue
            t.add_row(title, str(c), _f(r[f"{label}_rps_c{c}"], 0), _f(r[f"{label}_p50_ms_c{c}"]),
                      _f(r[f"{label}_p99_ms_c{c}"]), _f(r[f"{label}_p999_ms_c{c}"]),
                      str(r[f"{label}_errors_c{c}"]), str(r[f"{label}_non2xx_c{c}"]),
                      _pct(r.get(f"{label}_hit_share_c{c}")),
                      _pct(r.get(f"{label}_server_cpu_c{c}")), _pct(r.get(f"{label}_foreign_cpu_c{c}")))
    console.print(t)
    for c in (8, 64):
        room = r.get(f"loadgen_headroom_c{c}")
        if room is not None:
            note = "" if room >= 3 else " [red](the generator may be limiting this point)[/red]"
            console.print(f"c{c}: load-generator ceiling is {room:.1f}x the fastest server{note}")
    console.print("cache hits: edge responses saying timing.cache = hit (counted by the load generator). "
                  "server CPU / others on core: CPU the server process / other processes used on the server's "
                  "core over the point (warm-up included)")
    hit = r.get("edge_cache_hit_ratio")
    why = f"n/a (/metrics: {r.get('edge_metrics_scrape', 'not scraped')})"
    console.print(f"edge response-cache hit ratio from /metrics over the cached-mix points: "
                  f"{why if hit is None else f'{hit:.1%}'}; "
                  f"payload repeat share {r.get('payload_repeat_share', 0):.1%}")

    for suffix, what in (("", "cached mix"), ("_nocache", "cache misses")):
        rounds = r.get(f"edge_auth{suffix}_ratio_rounds_c8")
        if rounds:
            console.print(f"auth on / off, {what}, c8: {len(rounds)} back-to-back pairs (order alternating), ratios "
                          f"{[round(x, 3) for x in rounds]}, median {statistics.median(rounds):.3f} (the target); "
                          f"the rows show the median req/s and the last pair's latencies")
    if r.get("edge_store_refreshes"):
        console.print(f"edge + Valkey: {r.get('store_counted_items_per_slot')} counted items in each of "
                      f"{r.get('store_slots')} slots, {r.get('store_session_vectors')} session vectors; the background "
                      f"refresher read {_f(r.get('edge_store_slots_tracked'), 0)} slots per refresh, "
                      f"{_f(r.get('edge_store_refreshes'), 0)} refreshes, mean {_f(r.get('edge_store_refresh_mean_ms'), 2)} ms "
                      f"each, {_f(r.get('edge_store_fields_read'), 0)} count fields parsed")
    elif r.get("edge_store_error"):
        console.print(f"edge + Valkey: not measured ({r['edge_store_error'][:200]})")

    print_router(r, console)

    t = Table(title="In-process decision latency (µs; cache misses only)")
    for col in ("ranker", "candidates", "p50", "p99", "mean", "iterations"):
        t.add_column(col, justify="right")
    for name, prefix in (("edge (guardrails on, as served)", "inproc"),
                         ("edge, guardrails off (age verified, no caps)", "inproc_noguard"),
                         ("naive (baselines, no guardrails)", "naive_inproc")):
        for n in (100, 1000):
            if f"{prefix}_p50_us_{n}" in r:
                t.add_row(name, str(n), _f(r[f"{prefix}_p50_us_{n}"], 1), _f(r[f"{prefix}_p99_us_{n}"], 1),
                          _f(r[f"{prefix}_mean_us_{n}"], 1), str(r[f"{prefix}_iterations_{n}"]))
    console.print(t)

    t = Table(title=f"Thompson decisions/s over {r.get('ts_arms', 100)} arms "
                    f"(sampler: {r.get('ts_sampler', 'numpy')})")
    for col in ("mode", "shared.ranking.bandit", "MABWiser", "ratio"):
        t.add_column(col, justify="right")
    t.add_row("single decision per call (like-for-like, headline)", _f(r.get("ts_decisions_per_s"), 0),
              _f(r.get("mabwiser_decisions_per_s"), 0), _f(r.get("ratio_ts_over_mabwiser"), 1))
    if r.get("ts_numpy_decisions_per_s"):
        t.add_row("single, shared.ranking.bandit on NumPy's Generator.beta (reference)",
                  _f(r["ts_numpy_decisions_per_s"], 0), _f(r.get("mabwiser_decisions_per_s"), 0),
                  _f(r["ts_numpy_decisions_per_s"] / r["mabwiser_decisions_per_s"], 1)
                  if r.get("mabwiser_decisions_per_s") else "-")
    t.add_row(f"batched, {r.get('ts_batch')} per call (like-for-like)",
              _f(r.get("ts_batched_decisions_per_s"), 0), _f(r.get("mabwiser_batched_decisions_per_s"), 0),
              _f(r.get("ratio_ts_over_mabwiser_batched"), 1))
    console.print(t)

    t = Table(title="Targets (issue 2)")
    for col in ("target", "measured", "bound", "verdict", "note"):
        t.add_column(col)
    for tg in TARGETS:
        v = r.get(tg.key)
        status, note = verdict(tg, v)
        style = {"PASS": "green", "MISS": "red"}.get(status, "yellow")
        label = tg.label if tg.headline else f"{tg.label} (context)"
        t.add_row(label, f"{_f(v)}{tg.unit if v is not None else ''}", f"{tg.op} {tg.bound:g}{tg.unit}",
                  f"[{style}]{status}[/{style}]", note)
    console.print(t)
    console.print(f"{r.get('cpu_model')} · nproc {r.get('nproc')} · load avg before {r.get('loadavg_before')} "
                  f"after {r.get('loadavg_after')} · {r.get('date')} · total {r.get('total_s', 0):.0f} s")


def print_router(r: dict, console: Console) -> None:
    """The router's cost point: the same edge without and with its router (every request escalated to an
    upstream that answers at once), cache misses only."""
    if r.get("router_error"):
        console.print(f"router cost: not measured ({r['router_error'][:300]})")
        return
    if "edge_plain_rps_c1" not in r and "edge_plain_rps_c4x2" not in r:
        return
    t = Table(title="Router cost: edge without / with its router, every request escalated to an upstream "
                    "answering at once (cache misses only; 4x2: both edges loaded at once on one core)")
    for col in ("edge", "connections", "req/s", "p50 ms", "p99 ms", "edge CPU µs/request", "escalated", "errors"):
        t.add_column(col, justify="left" if col == "edge" else "right")
    for label, title in (("edge_plain", "router off"), ("edge_routed", "router on")):
        for c in ("4x2", 1):
            if f"{label}_rps_c{c}" not in r:
                continue
            t.add_row(title, str(c), _f(r[f"{label}_rps_c{c}"], 0), _f(r[f"{label}_p50_ms_c{c}"], 3),
                      _f(r[f"{label}_p99_ms_c{c}"], 3), _f(r.get(f"{label}_cpu_us_per_request_c{c}"), 1),
                      _pct(r.get(f"{label}_escalated_share_c{c}")), str(r.get(f"{label}_errors_c{c}")))
    console.print(t)
    console.print(f"router's own cost per escalated request: {_f(r.get('router_cpu_us_per_escalation'), 1)} µs of edge "
                  f"CPU (4 connections to each edge at once, median of rounds {r.get('router_cpu_us_rounds')}; bound {150:g} µs), {_f(r.get('router_latency_us_per_escalation_p50'), 1)} µs p50 / "
                  f"{_f(r.get('router_latency_us_per_escalation_p99'), 1)} µs p99 added latency at c1 (upstream "
                  "round trip on loopback included)")
