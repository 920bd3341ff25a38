"""The capacity model behind ``strata capacity``: replicas, partitions and shards for a given load, from
per-core figures this machine measured.

Every serving process is single-threaded (one event loop, one ONNX thread), so a replica is one core and a
tier's replicas are its load times the CPU one unit of work costs, over the utilisation a replica may run at
(``target_utilization``, the HPAs' 60 %). The figures come from the benchmark results (``loadtest/results``):

==================  =============================================================================
edge                ``bench-edge.json``: CPU per request of the edge with a real store, on cache misses
                    (``edge_store_nocache_*``) and on the cached mix (``edge_store_*``, at its hit share);
                    a request costs ``hit * hit_cost + (1 - hit) * miss_cost`` (``--edge-cache-hit``)
tier 2              ``capacity.json`` ``tier2``: the tier-2 scorer over HTTP on one core (bench_capacity)
origin              ``bench-origin.json``: mean latency of one request at a time in-process (one core)
processor,          ``bench-streaming.json``: CPU share of each process at the highest sustained rate, per
Valkey CPU          event
ingest              per POST and per event, from two points: one event per POST (``capacity.json``
                    ``ingest_single``) and the streaming benchmark's 100 per POST (``--events-per-post``)
memory              ``capacity.json`` ``memory``: MEMORY USAGE of the keys the real processor wrote
==================  =============================================================================

The load: ``recommend_rps`` answers/s hit the edges; ``streaming_share`` and ``origin_share`` of them are
escalated (by default the router's admission cap, ``router.max_escalation_share``, split 0.25 / 0.10: the
upper tiers are sized for the most the router lets through); with impressions on, every answer is also an
``impression`` event on the log, so the processor handles ``events_per_s + recommend_rps``. Kafka partitions
= processors (one consumer per partition). Valkey shards (masters, each with ``replicas_per_shard``
replicas) = the larger of memory / ``shard_memory_gb`` and the processor's write load / one core.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strata.shared.config import RouterSettings, StreamingSettings

GB = 1024**3


@dataclass(frozen=True, slots=True)
class Figure:
    value: float
    unit: str
    source: str


@dataclass(frozen=True, slots=True)
class Load:
    recommend_rps: float
    events_per_s: float
    sessions: int
    users: int | None = None                # known users with a profile; None: one per session
    impressions: bool = True                # every answer logged as an impression event
    events_per_post: float = 1.0            # events per POST /v1/events (a browser sends one, an SDK batches)
    edge_cache_hit: float = 0.0             # share of edge requests its response cache answers
    streaming_share: float = 0.25
    origin_share: float = 0.10
    target_utilization: float = 0.6
    shard_memory_gb: float = 25.0           # usable memory (maxmemory) of one Valkey master
    replicas_per_shard: int = 1
    min_replicas: int = 2
    dedup_ttl_s: float = field(default_factory=lambda: StreamingSettings().dedup_ttl_s)
    join_window_s: float = field(default_factory=lambda: StreamingSettings().click_join_window_s)

    def check(self) -> None:
        cap = RouterSettings().max_escalation_share
        if self.streaming_share + self.origin_share > cap + 1e-9:
            raise ValueError(f"streaming_share + origin_share = {self.streaming_share + self.origin_share:g} "
                             f"exceeds router.max_escalation_share {cap:g}")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        if self.events_per_post < 1:
            raise ValueError("events_per_post must be at least 1")
        if not 0 <= self.edge_cache_hit <= 1:
            raise ValueError("edge_cache_hit must be in [0, 1]")


# -- figures ------------------------------------------------------------------------------------------------

def _read(dirs: list[Path], name: str) -> tuple[dict, Path]:
    for d in dirs:
        path = d / name
        if path.is_file():
            return json.loads(path.read_text()), path
    raise FileNotFoundError(f"{name} not found in {', '.join(str(d) for d in dirs)}")


def _date(doc: dict) -> str:
    date = doc.get("date") or doc.get("machine", {}).get("date")
    return str(date)[:10] if date else "undated"


def load_figures(dirs: list[Path]) -> dict[str, Figure]:
    """The per-core and per-key figures, each with the file, keys and date it comes from (first dir wins)."""
    out: dict[str, Figure] = {}
    edge, path = _read(dirs, "bench-edge.json")
    src = f"{path.name} ({_date(edge)})"
    miss = edge["edge_store_nocache_server_cpu_c8"] / edge["edge_store_nocache_rps_c8"]
    mixed = edge["edge_store_server_cpu_c8"] / edge["edge_store_rps_c8"]
    h = edge["edge_store_hit_share_c8"]
    hit = max((mixed - (1 - h) * miss) / h, 0.0) if h > 0 else miss
    out["edge_miss_us"] = Figure(miss * 1e6, "CPU µs/request",
                                 f"{src}: edge_store_nocache_server_cpu_c8 / edge_store_nocache_rps_c8")
    out["edge_hit_us"] = Figure(hit * 1e6, "CPU µs/request",
                                f"{src}: edge_store_* at hit share {h:.2f}, less its misses")

    streaming, path = _read(dirs, "bench-streaming.json")
    top = max(streaming["points"], key=lambda p: p["sustained_events_per_s"])
    src = f"{path.name} ({_date(streaming)}), {top['sustained_events_per_s']:.0f} events/s sustained"
    for name, proc in (("processor_us", "processor"), ("valkey_us", "store")):
        out[name] = Figure(top["cpu_share_of_one_core"][proc] / top["sustained_events_per_s"] * 1e6,
                           "CPU µs/event", f"{src}: cpu_share_of_one_core.{proc} / sustained_events_per_s")
    batch = streaming["batch"]
    batched = top["cpu_share_of_one_core"]["ingest"] / top["sustained_events_per_s"] * 1e6

    origin, path = _read(dirs, "bench-origin.json")
    out["origin_us"] = Figure(origin["mean_ms"] * 1000, "CPU µs/request",
                              f"{path.name} ({_date(origin)}): mean_ms, {origin['n_items']} items, one request "
                              f"at a time in-process")

    cap, path = _read(dirs, "capacity.json")
    src = f"{path.name} ({_date(cap)})"
    t2 = cap["tier2"]
    out["tier2_us"] = Figure(t2["cpu_us_per_request"], "CPU µs/request",
                             f"{src}: tier2.cpu_us_per_request (HTTP, {t2['rps']:.0f} req/s at "
                             f"{t2['server_cpu']:.2f} core)")
    single = cap["ingest_single"]["cpu_us_per_request"]
    post = max((single - batched) * batch / (batch - 1), 0.0)     # c(k) = post / k + event: c(1), c(batch) known
    out["ingest_post_us"] = Figure(post, "CPU µs/POST", f"{src}: ingest_single.cpu_us_per_request (1 event per "
                                   f"POST) and bench-streaming.json's ingest share ({batch} per POST)")
    out["ingest_event_us"] = Figure(max(single - post, 0.0), "CPU µs/event",
                                    f"{src} and bench-streaming.json: the same two points")
    mem = cap["memory"]
    msrc = f"{src}: memory, MEMORY USAGE of {mem['world']['sessions']} sessions written by the processor"
    out["session_bytes"] = Figure(mem["session_bytes"], "bytes/session", msrc + " (session hash)")
    out["user_bytes"] = Figure(mem["user_bytes"], "bytes/user", msrc + " (profile hash + purchases)")
    out["impression_bytes"] = Figure(mem["impression_bytes"], "bytes/impression", msrc + " (impression hash)")
    out["seen_id_bytes"] = Figure(mem["seen_id_bytes"], "bytes/event id", msrc + " (dedup sets)")
    out["overhead_factor"] = Figure(mem["overhead_factor"], "x", f"{src}: used_memory growth / sum of MEMORY USAGE")
    out["log_event_bytes"] = Figure(mem["log_event_bytes"], "bytes/event", f"{src}: encoded events")
    out["log_impression_bytes"] = Figure(mem["log_impression_bytes"], "bytes/impression",
                                         f"{src}: encoded impression events")
    return out


# -- the model ----------------------------------------------------------------------------------------------

def _replicas(work_per_s: float, us_per_unit: float, load: Load, floor: int | None = None) -> dict:
    cores = work_per_s * us_per_unit / 1e6
    n = math.ceil(cores / load.target_utilization - 1e-9) if work_per_s > 0 else 0
    return {"replicas": max(n, load.min_replicas if floor is None else floor), "busy_cores": round(cores, 2),
            "per_replica_at_target": round(1e6 / us_per_unit * load.target_utilization, 1)}


def plan(load: Load, fig: dict[str, Figure]) -> dict[str, Any]:
    load.check()
    f = {k: v.value for k, v in fig.items()}
    r = load.recommend_rps
    imps = r if load.impressions else 0.0
    log_events = load.events_per_s + imps
    edge_us = load.edge_cache_hit * f["edge_hit_us"] + (1 - load.edge_cache_hit) * f["edge_miss_us"]
    out: dict[str, Any] = {
        "edge": _replicas(r, edge_us, load),
        "ingest": _replicas(load.events_per_s, f["ingest_post_us"] / load.events_per_post + f["ingest_event_us"],
                            load),
        "tier2": _replicas(r * load.streaming_share, f["tier2_us"], load),
        "origin": _replicas(r * load.origin_share, f["origin_us"], load),
        "processor": _replicas(log_events, f["processor_us"], load, floor=1),
    }
    out["edge"]["us_per_request"] = round(edge_us, 1)
    out["kafka"] = {"partitions": out["processor"]["replicas"], "events_per_s": log_events,
                    "mb_per_s": round((load.events_per_s * f["log_event_bytes"] + imps * f["log_impression_bytes"])
                                      / 1e6, 1)}
    users = load.sessions if load.users is None else load.users
    ids_kept = log_events * load.dedup_ttl_s * 2        # an id is remembered 1-2 dedup TTLs (two buckets)
    mem = {
        "sessions": load.sessions * f["session_bytes"],
        "users": users * f["user_bytes"],
        "impressions": imps * load.join_window_s * f["impression_bytes"],
        "dedup_ids": ids_kept * f["seen_id_bytes"],
    }
    mem = {k: v * f["overhead_factor"] for k, v in mem.items()}
    total = sum(mem.values())
    by_memory = math.ceil(total / (load.shard_memory_gb * GB) - 1e-9) if total else 1
    valkey = _replicas(log_events, f["valkey_us"], load, floor=1)
    shards = max(by_memory, valkey["replicas"], 1)
    out["valkey"] = {"shards": shards, "replicas_per_shard": load.replicas_per_shard,
                     "nodes": shards * (1 + load.replicas_per_shard), "by_memory": by_memory,
                     "by_write_cpu": valkey["replicas"], "write_busy_cores": valkey["busy_cores"],
                     "memory_gb": {k: round(v / GB, 2) for k, v in mem.items()} | {"total": round(total / GB, 2)}}
    out["cores"] = round(sum(out[t]["replicas"] for t in ("edge", "ingest", "tier2", "origin", "processor")), 1)
    return out


def report(load: Load, fig: dict[str, Figure]) -> dict[str, Any]:
    return {"inputs": asdict(load) | {"users": load.sessions if load.users is None else load.users},
            "plan": plan(load, fig), "figures": {k: asdict(v) for k, v in fig.items()}}


def tables(rep: dict[str, Any]):
    """Rich tables: the plan, the memory, and the figures it rests on."""
    from rich.table import Table

    p, inp, fig = rep["plan"], rep["inputs"], rep["figures"]
    t = Table(title=f"Capacity for {inp['recommend_rps']:,.0f} recommend/s, {inp['events_per_s']:,.0f} events/s, "
                    f"{inp['sessions']:,} sessions (replicas of one core at {inp['target_utilization']:.0%} CPU)")
    for col in ("component", "count", "load", "busy cores", "per replica at target"):
        t.add_column(col, justify="left" if col in ("component", "load") else "right")
    r = inp["recommend_rps"]
    rows = [("edge replicas", p["edge"], f"{r:,.0f} req/s (cache hit {inp['edge_cache_hit']:.0%})"),
            ("ingest replicas", p["ingest"], f"{inp['events_per_s']:,.0f} events/s ({inp['events_per_post']:g} per POST)"),
            ("tier-2 replicas", p["tier2"], f"{r * inp['streaming_share']:,.0f} req/s ({inp['streaming_share']:.0%})"),
            ("origin replicas", p["origin"], f"{r * inp['origin_share']:,.0f} req/s ({inp['origin_share']:.0%})"),
            ("processor replicas", p["processor"], f"{p['kafka']['events_per_s']:,.0f} events/s"
                                                   + (" incl. impressions" if inp["impressions"] else ""))]
    for name, row, what in rows:
        t.add_row(name, str(row["replicas"]), what, f"{row['busy_cores']:,}", f"{row['per_replica_at_target']:,}/s")
    t.add_row("Kafka partitions", str(p["kafka"]["partitions"]), f"{p['kafka']['mb_per_s']:,} MB/s in", "", "")
    v = p["valkey"]
    t.add_row("Valkey shards", str(v["shards"]), f"+{v['replicas_per_shard']} replica each ({v['nodes']} nodes); "
              f"memory needs {v['by_memory']}, writes {v['by_write_cpu']}", f"{v['write_busy_cores']:,}",
              f"{inp['shard_memory_gb']:g} GB")
    m = Table(title="Valkey memory (GB, incl. the keyspace overhead)")
    for col in ("what", "GB", "from"):
        m.add_column(col, justify="right" if col == "GB" else "left")
    gb = v["memory_gb"]
    users = inp["users"]
    m.add_row("session hashes", f"{gb['sessions']:,}", f"{inp['sessions']:,} sessions")
    m.add_row("profiles + purchases", f"{gb['users']:,}", f"{users:,} users")
    m.add_row("impressions awaiting clicks", f"{gb['impressions']:,}",
              f"{r if inp['impressions'] else 0:,.0f}/s x {inp['join_window_s']:,.0f} s join window")
    m.add_row("dedup event ids", f"{gb['dedup_ids']:,}",
              f"{p['kafka']['events_per_s']:,.0f}/s x {inp['dedup_ttl_s']:,.0f} s dedup TTL x 2 buckets")
    m.add_row("total", f"{gb['total']:,}", "")
    f = Table(title="Figures (measured on this machine)")
    for col in ("figure", "value", "unit", "source"):
        f.add_column(col, justify="right" if col == "value" else "left")
    for name, x in fig.items():
        f.add_row(name, f"{x['value']:,.1f}", x["unit"], x["source"])
    return t, m, f


# -- measuring ------------------------------------------------------------------------------------------------

def committed_results() -> Path:
    """``loadtest/results`` of this checkout (where the benchmarks' committed JSON lives)."""
    import strata.loadtest as lt

    return Path(lt.__file__).resolve().parent / "results"


def measure(registry: Path, out: Path, *, quick: bool = False, origin_registry: Path | None = None,
            console=None) -> list[str]:
    """Rerun the benchmarks the figures come from, writing their JSON into ``out``; returns what was rerun.

    The edge benchmark (``strata bench edge``), the streaming benchmark at 20k events/s, the tier-2 and memory
    measurements (``loadtest.bench_capacity``), and the origin benchmark when ``origin_registry`` holds its
    100k-item models (else the committed ``bench-origin.json`` stays the origin's figure)."""
    from strata.deploy.launcher import LAUNCHER
    from strata.loadtest import bench_capacity, bench_edge, bench_streaming

    out.mkdir(parents=True, exist_ok=True)
    reg = str(registry.resolve())
    say = console.print if console is not None else print
    say(f"measuring into {out} (registry {reg}); this takes minutes")
    bench_edge.main(LAUNCHER, reg, str(out / "bench-edge.json"), duration=3.0 if quick else 10.0, quick=quick)
    bench_streaming.main(LAUNCHER, reg, str(out / "bench-streaming.json"), 3.0 if quick else 8.0, (20_000,), 2)
    bench_capacity.run(LAUNCHER, reg, str(out / "capacity.json"), duration=3.0 if quick else 8.0,
                       sessions=500 if quick else bench_capacity.MEMORY_SESSIONS)
    done = ["bench-edge.json", "bench-streaming.json", "capacity.json"]
    if origin_registry is not None:
        from strata.loadtest.bench_origin import run as bench_origin

        res = bench_origin(origin_registry, requests=100 if quick else 400)
        (out / "bench-origin.json").write_text(json.dumps(res, indent=2) + "\n")
        done.append("bench-origin.json")
    return done
