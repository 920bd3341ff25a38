"""``strata bench streaming``: ingest -> broker -> processor -> store, all on this machine, in one run.

Broker (Tansu), store (valkey-server), ingest API and stream processor run as real processes; this process
is the load generator and the reader. For each offered rate it POSTs batches of view events (keep-alive
HTTP/1.1, open loop: sends on schedule whether or not earlier requests finished) for ``duration`` seconds,
then waits until every event is applied (the store's partition watermarks reach the log's ends):

- sustained events/s = events sent / (first send -> last event applied); the headline figure is the best
  point. It includes the tail (the last events' freshness), so a point offered at exactly 20k/s reads a
  little under 20k even when the system keeps up: the 25k point shows whether it goes beyond.
- freshness = event sent -> its session vector visible in the store, for one probe session per request,
  measured by a reader in this process: it listens on the invalidation channel (the processor publishes a
  batch's sessions after writing them) and confirms each probe by reading its vector (not the processor's
  clock). Request bodies are encoded before the clock starts, so the generator stays cheap.

Then a naive processor (one store round trip per command, no batching) consumes the same log and its
events/s is the baseline. Prints a table and writes JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import orjson
import redis.asyncio as aioredis

from strata.loadtest.bench_report import machine_info
from strata.loadtest.launch import Launcher, free_port
from strata.loadtest.naive_processor import naive_events_per_s
from strata.loadtest.servers import process_ticks
from strata.shared import keys as K
from strata.shared.config import load_settings

RATES = (5_000, 10_000, 20_000, 25_000)
BATCH = 100          # events per request
CONNECTIONS = 8
NAIVE_EVENTS = 30_000   # the naive processor reads this many events from the start of the same log
TARGETS = {"sustained_events_per_s": (">=", 20_000.0), "freshness_p99_ms_10k": ("<=", 250.0),
           "speedup_over_naive": (">=", 3.0)}


class _Conn:
    """A keep-alive HTTP/1.1 connection posting pre-encoded requests one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()

    async def post(self, body: bytes) -> int:
        async with self.lock:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                              b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await self.reader.readexactly(length)
            return status


def _bodies(n_requests: int, t0_ms: int, interval_s: float, items: list[str], tag: str) -> list[bytes]:
    """Every request body of a point, encoded before the clock starts (the generator must not be the
    bottleneck); each event's ``ts`` is its request's scheduled send time."""
    out = []
    for i in range(n_requests):
        ts = t0_ms + int(i * interval_s * 1000)
        probe = f"{tag}-p{i}"
        out.append(orjson.dumps({"events": [
            {"event_id": f"{tag}-{i}-{j}", "type": "view", "tenant": "bench", "user_id": f"u{(i * 7 + j) % 5000}",
             "session_id": probe if j == BATCH - 1 else f"{tag}-s{(i * BATCH + j) % 20000}", "ts": ts,
             "channel": "web", "item_id": items[(i * 31 + j) % len(items)]} for j in range(BATCH)]}))
    return out


async def _offer(port: int, rate: int, duration_s: float, items: list[str], tag: str, store_url: str,
                 already: int) -> dict:
    conns = [_Conn(port) for _ in range(CONNECTIONS)]
    n_requests = int(rate * duration_s / BATCH)
    interval = BATCH / rate
    start_ms = int(time.time() * 1000) + 1000
    bodies = _bodies(n_requests, start_ms, interval, items, tag)
    probes: dict[str, float] = {}        # probe session -> send time (epoch s)
    visible: dict[str, float] = {}
    statuses: dict[int, int] = {}
    r = aioredis.from_url(store_url)
    done_sending = asyncio.Event()
    notified: asyncio.Queue = asyncio.Queue()
    sub = r.pubsub(ignore_subscribe_messages=True)
    await sub.subscribe(K.INVALIDATION_CHANNEL)

    async def listener() -> None:
        # The processor publishes the sessions of every batch it wrote, after the write; a probe named in
        # a message is then confirmed by reading its vector (below): the time is the reader's, not the
        # processor's.
        while True:
            m = await sub.get_message(timeout=0.05)
            if m is not None:
                now = time.time()
                for tenant, session in msgpack.unpackb(m["data"], raw=False):
                    if tenant == "bench" and session in probes and session not in visible:
                        notified.put_nowait((session, now))

    async def reader() -> None:
        while not (done_sending.is_set() and len(visible) == len(probes)):
            try:
                first = await asyncio.wait_for(notified.get(), 0.2)
            except TimeoutError:
                first = None
            batch = [first] if first else []
            while not notified.empty():
                batch.append(notified.get_nowait())
            if not batch:
                continue
            async with r.pipeline(transaction=False) as p:
                for s, _ in batch:
                    p.hexists(K.session_key("bench", s), "updated_ms")
                found = await p.execute()
            now = time.time()
            for (s, seen_at), ok in zip(batch, found, strict=True):
                if ok and s not in visible:
                    visible[s] = min(seen_at, now)
                elif not ok:                      # notified but not readable yet: look again shortly
                    notified.put_nowait((s, now))

    async def one(i: int) -> None:
        probe = f"{tag}-p{i}"
        probes[probe] = time.time()
        try:
            status = await conns[i % CONNECTIONS].post(bodies[i])
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        statuses[status] = statuses.get(status, 0) + 1

    ltask = asyncio.create_task(listener())
    rtask = asyncio.create_task(reader())
    while time.time() * 1000 < start_ms:
        await asyncio.sleep(0.005)
    t0 = time.perf_counter()
    tasks = []
    for i in range(n_requests):
        delay = t0 + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    done_sending.set()
    sent_s = time.perf_counter() - t0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(rtask, 60)
    ltask.cancel()
    await asyncio.gather(ltask, return_exceptions=True)
    await sub.aclose()
    accepted = statuses.get(202, 0) * BATCH
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:         # every event applied: the watermarks reach the log's ends
        marks = await r.hgetall(K.WATERMARK_KEY)
        if sum(int(v) + 1 for v in marks.values()) >= already + accepted:
            break
        await asyncio.sleep(0.005)
    all_applied_s = time.perf_counter() - t0
    await r.aclose()
    for c in conns:
        if c.writer is not None:
            c.writer.close()
    lat = np.array([(visible[s] - probes[s]) * 1000 for s in visible]) if visible else np.array([np.nan])
    return {"offered_events_per_s": rate, "events": accepted, "send_s": round(sent_s, 3),
            "sent_events_per_s": round(accepted / sent_s, 1),
            "sustained_events_per_s": round(accepted / all_applied_s, 1),
            "freshness_p50_ms": round(float(np.percentile(lat, 50)), 1),
            "freshness_p99_ms": round(float(np.percentile(lat, 99)), 1),
            "probes_visible": len(visible), "probes": len(probes), "statuses": {str(k): v for k, v in statuses.items()}}


TICKS = os.sysconf("SC_CLK_TCK")


async def _catchup(cfg, catalog, n_events: int) -> float:
    """The batched processor (in this process) reading the first ``n_events`` of the same log into an empty
    store: events/s under the same conditions as the naive processor (no ingest load meanwhile)."""
    from strata.streaming.processor import StreamProcessor

    proc = StreamProcessor(cfg, catalog)
    await proc.start()
    task = asyncio.create_task(proc.run())
    try:
        while proc.metrics.applied + proc.metrics.duplicates == 0:
            await asyncio.sleep(0.001)
        t0 = time.perf_counter()
        while proc.metrics.applied + proc.metrics.duplicates < n_events:
            await asyncio.sleep(0.001)
        return n_events / (time.perf_counter() - t0)
    finally:
        proc.stop()
        await task
        await proc.close()


def _ticks(pid: int | None) -> int:
    try:
        return process_ticks(pid) if pid else 0
    except OSError:
        return 0


def main(launcher: Launcher, registry: str, json_path: str | None = None, duration: float = 10.0, rates=RATES,
         processors: int = 2) -> dict:
    from strata.streaming.catalog import load_catalog

    registry = str(Path(registry).resolve())
    catalog = load_catalog(registry, "edge-scorer")
    items = list(catalog.index)
    result: dict = {"machine": machine_info(), "duration_s": duration, "batch": BATCH, "connections": CONNECTIONS,
                    "processors": processors, "loadavg_before": [round(x, 2) for x in os.getloadavg()], "points": []}
    with launcher.broker() as broker, launcher.store() as store, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = {"broker": broker.bootstrap, "store": store.url, "registry": registry, "port": port,
               "topics": {"partitions": 4}, "tier2": {"enabled": False}}    # the ingest path only
        conf = Path(tmp) / "strata.yaml"
        conf.write_text(orjson.dumps({"log_level": "WARNING", "streaming": cfg}).decode())   # JSON is YAML
        ingest = launcher.process("ingest", [*launcher.command(), "streaming", "serve", "--config", str(conf)],
                                ready_url=f"http://127.0.0.1:{port}/readyz", log_path=Path(tmp) / "ingest.log")
        # the processor: ``processors`` members of one consumer group (the topic's 4 partitions split among them)
        procs = [launcher.process(f"processor-{i}", [*launcher.command(), "streaming", "process", "--config", str(conf)],
                                log_path=Path(tmp) / f"processor-{i}.log") for i in range(processors)]
        with contextlib.ExitStack() as running:
            running.enter_context(ingest.start())
            for p in procs:
                running.enter_context(p.start())
            # warm-up: until every member joined the group and a first point went through (not reported)
            warm = asyncio.run(_offer(port, 1000, 2.0 + 2.0 * (processors - 1), items, "warm", store.url, 0))
            result["warmup_events"] = warm["events"]
            pids = {"ingest": [ingest.pid], "processor": [p.pid for p in procs], "broker": [broker.pid],
                    "store": [store.pid], "loadgen+reader": [os.getpid()]}
            for k, rate in enumerate(rates):
                already = result["warmup_events"] + sum(p["events"] for p in result["points"])
                before, t0 = {n: sum(map(_ticks, ps)) for n, ps in pids.items()}, time.monotonic()
                point = asyncio.run(_offer(port, rate, duration, items, f"r{k}", store.url, already))
                wall = time.monotonic() - t0
                # where the time goes: CPU seconds per process over the point, as a share of one core
                point["cpu_share_of_one_core"] = {n: round((sum(map(_ticks, ps)) - before[n]) / TICKS / wall, 2)
                                                  for n, ps in pids.items()}
                result["points"].append(point)
                print(f"offered {rate}/s: {point}", flush=True)
        total = min(NAIVE_EVENTS, result["warmup_events"] + sum(p["events"] for p in result["points"]))
        result["naive_events"] = total
        settings = load_settings(streaming=cfg).streaming
        naive_url = store.url.replace("/0", "/1")
        result["naive_events_per_s"] = round(naive_events_per_s(
            broker.bootstrap, settings.topics.events, naive_url, "naive-bench", total, catalog.vector,
            settings.session), 1)
        result["processor_catchup_events_per_s"] = round(asyncio.run(_catchup(
            settings.model_copy(update={"store": store.url.replace("/0", "/2"), "group": "catchup-bench"}),
            catalog, total)), 1)
    by_rate = {p["offered_events_per_s"]: p for p in result["points"]}
    result["sustained_events_per_s"] = max(p["sustained_events_per_s"] for p in result["points"])
    if 10_000 in by_rate:
        result["freshness_p50_ms_10k"] = by_rate[10_000]["freshness_p50_ms"]
        result["freshness_p99_ms_10k"] = by_rate[10_000]["freshness_p99_ms"]
    result["speedup_over_naive"] = round(result["sustained_events_per_s"] / result["naive_events_per_s"], 2) \
        if result["naive_events_per_s"] else None
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def missed(result: dict) -> list[str]:
    out = []
    for key, (op, bound) in TARGETS.items():
        v = result.get(key)
        if v is None or (op == ">=" and v < bound) or (op == "<=" and v > bound):
            out.append(f"{key} {v} (target {op} {bound:g})")
    return out


def print_table(result: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"streaming tier, {result['duration_s']} s per point, {result['batch']} events per request, "
                    f"{result.get('processors', 1)} processor process(es)")
    for col in ("offered ev/s", "accepted", "sent ev/s", "sustained ev/s", "freshness p50 ms", "freshness p99 ms",
                "probes seen", "statuses"):
        t.add_column(col, justify="right")
    for p in result["points"]:
        t.add_row(str(p["offered_events_per_s"]), str(p["events"]), f"{p['sent_events_per_s']:,.0f}",
                  f"{p['sustained_events_per_s']:,.0f}", f"{p['freshness_p50_ms']:.1f}",
                  f"{p['freshness_p99_ms']:.1f}", f"{p['probes_visible']}/{p['probes']}", str(p["statuses"]))
    console.print(t)
    for p in result["points"]:
        cpu = p.get("cpu_share_of_one_core", {})
        console.print(f"{p['offered_events_per_s']}/s CPU (share of one core): "
                      + ", ".join(f"{n} {v:.2f}" for n, v in cpu.items()))
    console.print(f"naive processor (one round trip per command): {result['naive_events_per_s']:,.0f} events/s; "
                  f"best sustained / naive = {result['speedup_over_naive']}; batched processor catching up on the "
                  f"same {result['naive_events']} events: {result['processor_catchup_events_per_s']:,.0f} events/s")
    for key, (op, bound) in TARGETS.items():
        v = result.get(key)
        ok = v is not None and (v >= bound if op == ">=" else v <= bound)
        console.print(f"{key}: {v} (target {op} {bound:g}) {'PASS' if ok else 'MISS'}")
