"""The figures of the capacity model (``strata capacity``) that no other benchmark measures.

- ``tier2`` and ``ingest_single``: the tier-2 scorer and the event ingest (one event per POST: what a browser
  sends; the streaming benchmark posts 100) over HTTP (``strata streaming serve``, ingest and tier 2 in one process, its
  impressions logged to a real broker) pinned to one core, the load generator on another, on the edge
  benchmark's unique request mix (no two alike) with session vectors and bandit counts in a real Valkey:
  requests/s and the server's CPU share, so CPU seconds per request.
- ``memory``: bytes per key in a real Valkey (``MEMORY USAGE ... SAMPLES 0``), for keys written by the real
  stream processor (``StreamProcessor.apply``: the planner and the store scripts) from the synthetic
  world's sessions: their views, clicks, carts and purchases, and an impression event (the edge's own
  ``impression_event``) for every slate shown. Per live session (session hash), per user (profile hash
  and purchases), per logged impression awaiting its clicks, per event id remembered for dedup; plus how
  much the whole dataset grew (``INFO memory``) over the sum of the keys (the keyspace's own overhead), and
  the encoded size of an event and of an impression on the log (Kafka throughput).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import orjson

from strata.loadtest.bench_http import PATH, HttpPlan
from strata.loadtest.bench_report import machine_info
from strata.loadtest.bench_store import seed_store
from strata.loadtest.launch import Launcher
from strata.loadtest.loadgen import UNIQUE_MARKER, Workload, save_workload
from strata.loadtest.payloads import encode_json, load_catalog, unique_mix
from strata.loadtest.servers import PinnedServer, free_port, pick_cores, process_ticks, run_loadgen
from strata.shared.serving.codecs import JSON

TICKS = os.sysconf("SC_CLK_TCK")
MEMORY_SESSIONS = 2000


def _cpu_point(server: PinnedServer, workload: str, conns: int, plan: HttpPlan, core: int) -> dict:
    t0, own0 = time.monotonic(), process_ticks(server.pid)
    r = run_loadgen(server.port, workload, conns, plan.duration_s, plan.warmup_s, core)
    wall, own = time.monotonic() - t0, process_ticks(server.pid) - own0
    cpu = own / TICKS / wall
    return {"rps": round(r["rps"], 1), "p50_ms": round(r["p50_ms"], 3), "p99_ms": round(r["p99_ms"], 3),
            "requests": r["requests"], "errors": r["errors"], "non_2xx": r["non_2xx"],
            "server_cpu": round(cpu, 3), "connections": conns,
            "cpu_us_per_request": round(cpu / r["rps"] * 1e6, 1) if r["rps"] else None}


def _event_bodies(catalog, n: int, seed: int = 3) -> list[bytes]:
    """``n`` single-event POST bodies (views over many sessions); the load generator makes every event id unique."""
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    return [orjson.dumps({"event_id": f"cap-{i:06d}-{UNIQUE_MARKER.decode()}", "type": "view", "tenant": "default",
                          "user_id": f"u{i % 997}", "session_id": f"cap-s{i % 4096}", "ts": now, "channel": "web",
                          "item_id": catalog.item_ids[int(rng.integers(len(catalog.item_ids)))]})
            for i in range(n)]


def http_points(launcher: Launcher, registry: str, duration: float = 8.0, warmup: float = 2.0,
                connections: int = 8, bodies: int = 4096) -> dict:
    """The tier-2 scorer's and the ingest's CPU per request, each on one core (see the module docstring)."""
    catalog = load_catalog(registry)
    cores = pick_cores()
    plan = HttpPlan(duration, warmup, cached_bodies=0, unique_bodies=bodies)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        store = stack.enter_context(launcher.store())
        os.sched_setaffinity(store.pid, {cores.loadgen})      # the server's core stays the server's
        seeded = seed_store(store, catalog)
        broker = stack.enter_context(launcher.broker())
        os.sched_setaffinity(broker.pid, {cores.loadgen})
        port = free_port()
        conf = Path(tmp) / "strata.yaml"
        conf.write_text(orjson.dumps({"log_level": "WARNING", "streaming": {
            "port": port, "broker": broker.bootstrap, "store": store.url, "registry": registry,
            "tier2": {"enabled": True}}}).decode())
        recommend, events = str(Path(tmp) / "tier2.workload"), str(Path(tmp) / "events.workload")
        save_workload(Workload(PATH, JSON, encode_json(unique_mix(catalog, bodies))), recommend)
        save_workload(Workload("/v1/events", JSON, _event_bodies(catalog, bodies)), events)
        server = stack.enter_context(PinnedServer(
            "streaming", [*launcher.command(), "streaming", "serve", "--config", str(conf)], port, cores.server))
        tier2 = _cpu_point(server, recommend, connections, plan, cores.loadgen)
        ingest = _cpu_point(server, events, connections, plan, cores.loadgen)
    common = {"pinned_separately": cores.separate, "duration_s": duration}
    return {"tier2": {**tier2, **common, "session_vectors": seeded["store_session_vectors"],
                      "workload": "unique recommend mix of the edge benchmark, JSON"},
            "ingest_single": {**ingest, **common, "events_per_post": 1,
                              "workload": "one view event per POST /v1/events, JSON, unique event ids"}}


# -- memory ----------------------------------------------------------------------------------------------------

def _world_events(n_items: int, sessions: int, seed: int) -> tuple[list[dict], dict]:
    """The synthetic world's events for ``sessions`` sessions, with the edge's impression event of every slate
    before the events it led to; ordered by session then time (the log's per-session order)."""
    from strata.model_export.world import generate_world
    from strata.shared.serving.impression_log import impression_event, shown

    # the default world's ratio of sessions to users (40,000 / 3,000): returning users with 28 days of history
    world = generate_world(seed=seed, n_items=n_items, n_sessions=sessions, n_users=max(sessions * 3 // 40, 10))
    s, cat, users = world.sessions, world.catalog, world.users
    per_session: dict[int, list[tuple[int, int, dict]]] = defaultdict(list)
    slates: dict[int, list[int]] = defaultdict(list)
    for row in range(s.imp_item.shape[0]):
        slates[int(s.imp_slate[row])].append(row)
    slate_ids = [str(uuid.UUID(bytes=bytes(b))) for b in s.slate_uuid]
    now = int(time.time() * 1000)
    shift = now - int(s.ev_ts_ms.max()) - 60_000 if s.ev_ts_ms.size else 0      # recent: nothing expired yet
    for slate, rows in slates.items():
        sess = int(s.imp_session[rows[0]])
        items = tuple(str(cat.item_id[s.imp_item[r]]) for r in rows)
        k = len(items)
        ev = impression_event(slate_ids[slate], int(s.imp_ts_ms[rows[0]]) + shift,
                              shown("default", str(users.user_id[s.user[sess]]), str(s.session_id[sess]), "home",
                                    "web", items, (False,) * k, np.full(k, 3.0), np.full(k, 60.0), "1.0.0"))
        per_session[sess].append((ev["ts"], 0, ev))
    for i, ev in enumerate(world.iter_events()):
        d = ev.to_dict()
        d["ts"] = d["ts"] + shift
        if d.get("impression_id") is not None:
            d["impression_id"] = slate_ids[int(s.ev_slate[i])]
        per_session[int(s.ev_session[i])].append((d["ts"], 1, d))
    out = [e for sess in sorted(per_session) for _, _, e in sorted(per_session[sess], key=lambda t: t[:2])]
    counts = defaultdict(int)
    for e in out:
        counts[e["type"]] += 1
    users_seen = {e["user_id"] for e in out}
    return out, {"sessions": len(per_session), "users": len(users_seen), "events": len(out),
                 "by_type": dict(sorted(counts.items()))}


def _key_kind(key: bytes) -> str:
    k = key.decode()
    if k.startswith("strata:{stream}:seen:"):
        return "seen"
    if k.startswith("strata:{stream}:"):
        return "stream_state"
    for suffix, kind in ((":session", "session"), (":profile", "profile"), (":purchases", "purchases"),
                         (":bandit", "bandit"), (":imp", "impression"), (":pclk", "pending_clicks")):
        if k.endswith(suffix):
            return kind
    return "other"


def memory_point(launcher: Launcher, registry: str, sessions: int = MEMORY_SESSIONS, seed: int = 11,
                 batch: int = 2000) -> dict:
    """Bytes per key kind, written by the real processor into a real Valkey (see the module docstring)."""
    from strata.shared.config import load_settings
    from strata.shared.contracts.event_records import encode_event
    from strata.streaming.catalog import load_catalog as processor_catalog
    from strata.streaming.processor import StreamProcessor, to_record

    catalog = processor_catalog(registry, "edge-scorer")
    events, world = _world_events(len(catalog.index), sessions, seed)
    encoded = [encode_event(e) for e in events]
    sizes = defaultdict(list)
    for e, b in zip(events, encoded, strict=True):
        sizes["impression" if e["type"] == "impression" else "event"].append(len(b))
    with launcher.store() as store:
        client = store.client()
        try:
            base = int(client.info("memory")["used_memory"])
            cfg = load_settings(streaming={"store": store.url, "registry": registry}).streaming

            async def apply_all() -> None:
                proc = StreamProcessor(cfg, catalog)
                try:
                    offsets = [0, 0, 0, 0]
                    for lo in range(0, len(encoded), batch):
                        records = []
                        for e, value in zip(events[lo:lo + batch], encoded[lo:lo + batch], strict=True):
                            p = hash(e["session_id"]) % 4
                            records.append(to_record("events", p, offsets[p], value))
                            offsets[p] += 1
                        await proc.apply(records)
                finally:
                    await proc.store.close()

            asyncio.run(apply_all())
            grown = int(client.info("memory")["used_memory"]) - base
            usage: dict[str, list[int]] = defaultdict(list)
            members = 0
            for key in client.scan_iter(count=1000):
                kind = _key_kind(key)
                usage[kind].append(int(client.memory_usage(key, samples=0)))
                if kind == "seen":
                    members += int(client.scard(key))
        finally:
            client.close()
    total = {k: sum(v) for k, v in usage.items()}
    by_type = world["by_type"]
    impressions = by_type.get("impression", 0)
    per = {
        "session_bytes": total.get("session", 0) / max(len(usage.get("session", [])), 1),
        "user_bytes": (total.get("profile", 0) + total.get("purchases", 0)) / max(len(usage.get("profile", [])), 1),
        "impression_bytes": (total.get("impression", 0) + total.get("pending_clicks", 0)) / max(impressions, 1),
        "seen_id_bytes": total.get("seen", 0) / max(members, 1),
    }
    return {
        "world": world, "keys": {k: len(v) for k, v in sorted(usage.items())},
        "memory_usage_bytes": dict(sorted(total.items())),
        "used_memory_growth_bytes": grown,
        "overhead_factor": round(grown / max(sum(total.values()), 1), 3),
        **{k: round(v, 1) for k, v in per.items()},
        "seen_ids": members,
        "log_event_bytes": round(float(np.mean(sizes["event"])), 1) if sizes["event"] else None,
        "log_impression_bytes": round(float(np.mean(sizes["impression"])), 1) if sizes["impression"] else None,
    }


def run(launcher: Launcher, registry: str, json_path: str | None = None, duration: float = 8.0,
        sessions: int = MEMORY_SESSIONS) -> dict:
    registry = str(Path(registry).resolve())
    result: dict = {"machine": machine_info(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    result["memory"] = memory_point(launcher, registry, sessions)
    result.update(http_points(launcher, registry, duration=duration))
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result
