"""``strata soak``: mixed traffic on a one-machine stack while its parts are killed and restarted.

Started here (through the ``Launcher`` the CLI hands in): the Tansu broker, ``valkey-server`` with
persistence on (AOF, fsync always), the streaming service (ingest + tier 2), the stream processor and an edge
logging impressions. Traffic (``soak_traffic``): events through the ingest, recommends through the edge and
tier 2. Faults on a schedule, one at a time, each after the previous one recovered:

- ``processor``: SIGKILL, restarted 3 s later;
- ``streaming``: the streaming service SIGKILLed, restarted 3 s later;
- ``broker-pause``: the broker stopped (SIGSTOP) for 5 s, its log kept;
- ``broker-restart``: the broker stopped and started again: its log is lost (memory storage);
- ``valkey``: SIGKILL, restarted 3 s later from its append-only file.

Recovery time of a fault = from the restart (the process spawned again, or the broker resumed) until a
canary event sent after it is applied. Before the faults,
the trigger relay's drain rate is measured (an outbox of ``RELAY_ENTRIES`` entries). At the end the traffic
stops, the processor catches up, and every user's view counter is compared with the views answered 202:
lost (fewer) and doubled (more). The report also gives the 5xx answers per tier and the p50/p99 per tier and
phase; the result fails (``passed: false``) on any loss, double, request never accepted, or 5xx from the edge
or tier 2 (the ingest's 503s are retried, as its contract says).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from strata.loadtest.bench_report import machine_info
from strata.loadtest.launch import Launcher, free_port
from strata.loadtest.soak_traffic import Traffic
from strata.shared import keys as K

FAULTS = ("processor", "streaming", "broker-pause", "broker-restart", "valkey")
RATES = {"events": 10.0, "edge": 20.0, "tier2": 10.0}        # requests/s (events: VIEWS + 5 events each)
RELAY_ENTRIES = 50_000
DOWN_S = 3.0


class Stack:
    """The processes of the soak and how to break each."""

    def __init__(self, launcher: Launcher, registry: str, tmp: Path) -> None:
        self.tmp = tmp
        self.broker = launcher.broker()
        store = launcher.store()                 # its binary and a free port; run with persistence on below
        self.store_port = store.port
        self.store_url = f"redis://127.0.0.1:{store.port}/0"
        self.valkey = launcher.process("valkey", [
            str(store.binary), "--port", str(store.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(tmp)], log_path=tmp / "valkey.log")
        self.ports = {"streaming": free_port(), "edge": free_port(), "metrics": free_port()}
        cmd = launcher.command()
        self.registry = registry
        self._launcher = launcher
        self.conf = tmp / "strata.yaml"
        # spawned here, readiness polled by the soak: a child must never be spawned from a worker thread (it
        # is asked to die with the thread that spawned it)
        self.processor = launcher.process("processor", [*cmd, "streaming", "process", "--config", str(self.conf),
                                                        "--metrics-port", str(self.ports["metrics"])],
                                          log_path=tmp / "processor.log")
        self.streaming = launcher.process("streaming", [*cmd, "streaming", "serve", "--config", str(self.conf)],
                                          log_path=tmp / "streaming.log")
        self.ready = {"processor": f"http://127.0.0.1:{self.ports['metrics']}/readyz",
                      "streaming": f"http://127.0.0.1:{self.ports['streaming']}/readyz"}
        self.edge = None
        self._cmd = cmd

    def start(self) -> None:
        self.broker.start()
        self.valkey.start()
        self._wait_store()
        cfg = {"broker": self.broker.bootstrap, "store": self.store_url, "registry": self.registry,
               "port": self.ports["streaming"], "topics": {"partitions": 4}}
        self.conf.write_text(orjson.dumps({"log_level": "WARNING", "streaming": cfg}).decode())   # JSON is YAML
        self.streaming.start()
        asyncio.run(self._wait_ready("streaming", 180))
        self.processor.start()
        asyncio.run(self._wait_ready("processor", 120))
        self.edge = self._launcher.process("edge", [
            *self._cmd, "edge", "--registry", self.registry, "--port", str(self.ports["edge"]), "--store",
            self.store_url, "--broker", self.broker.bootstrap, "--log-level", "WARNING"],
            ready_url=f"http://127.0.0.1:{self.ports['edge']}/readyz", log_path=self.tmp / "edge.log")
        self.edge.start(timeout_s=180)

    def _wait_store(self, timeout_s: float = 30.0) -> None:
        asyncio.run(self._wait_store_async(timeout_s))

    async def _wait_store_async(self, timeout_s: float = 30.0) -> None:
        c = aioredis.Redis(port=self.store_port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if await c.ping():
                        return
                await asyncio.sleep(0.05)
        finally:
            await c.aclose()
        raise RuntimeError("valkey-server did not answer PING")

    async def _wait_ready(self, name: str, timeout_s: float) -> None:
        import httpx

        proc = getattr(self, name)
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{proc.output_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.ready[name])).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} was not ready within {timeout_s}s:\n{proc.output_tail()}")

    def stop(self) -> dict[str, str]:
        """Stop everything; the last log lines of any process that did not exit cleanly on SIGTERM."""
        problems: dict[str, str] = {}
        for p in (self.edge, self.processor, self.streaming, self.valkey):
            if p is not None:
                with contextlib.suppress(Exception):
                    if p.stop() not in (0, None, -signal.SIGTERM):
                        problems[p.name] = p.output_tail(15)
        with contextlib.suppress(Exception):
            self.broker.stop()
        return problems

    async def inject(self, fault: str) -> float:
        """Break the part and bring it back; returns when it was restarted (``time.monotonic()``, before it
        is ready: the recovery time includes its start). Waits run in a thread or are polled: the traffic goes
        on; children are spawned from this thread only."""
        if fault in ("processor", "streaming"):
            proc = getattr(self, fault)
            await asyncio.to_thread(proc.kill)                 # kill only waits for the exit: no child spawned
            await asyncio.sleep(DOWN_S)
            restarted = time.monotonic()
            proc.start()
            await self._wait_ready(fault, 180)
        elif fault == "broker-pause":
            os.kill(self.broker.pid, signal.SIGSTOP)
            await asyncio.sleep(5.0)
            restarted = time.monotonic()
            os.kill(self.broker.pid, signal.SIGCONT)
        elif fault == "broker-restart":
            await asyncio.to_thread(self.broker.stop)
            await asyncio.sleep(1.0)
            restarted = time.monotonic()
            self.broker.start()                                  # listening within ~50 ms
        elif fault == "valkey":
            await asyncio.to_thread(self.valkey.kill)
            await asyncio.sleep(DOWN_S)
            restarted = time.monotonic()
            self.valkey.start()
            await self._wait_store_async()
        else:
            raise ValueError(f"unknown fault {fault!r}; faults are {list(FAULTS)}")
        return restarted


async def _views(r: aioredis.Redis, users: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for lo in range(0, len(users), 500):
        chunk = users[lo:lo + 500]
        async with r.pipeline(transaction=False) as pipe:
            for u in chunk:
                pipe.hgetall(K.profile_key("default", u))
            profs = await pipe.execute()
        for u, prof in zip(chunk, profs, strict=True):
            out[u] = sum(int(v) for k, v in prof.items() if k.startswith(b"v:"))
    return out


async def _recovery(traffic: Traffic, r: aioredis.Redis, fault: str, k: int, restarted: float,
                    timeout_s: float = 180.0) -> float | None:
    """Seconds from the restart until a canary event sent after it is applied (None: not within the timeout)."""
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        deadline = time.monotonic() + timeout_s
        j = 0
        while time.monotonic() < deadline:
            user = f"{traffic.tag}-canary-{fault}-{k}-{j}"
            j += 1
            if await traffic.send_events(client, user, 1):
                while time.monotonic() < deadline:
                    if (await _views(r, [user]))[user] >= 1:
                        return round(time.monotonic() - restarted, 2)
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.1)
    return None


async def _processor_metrics(stack: Stack) -> dict[str, float]:
    """The processor's counters at the end (resets, poison, store errors, duplicates): for the report."""
    import httpx

    out: dict[str, float] = {}
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(f"http://127.0.0.1:{stack.ports['metrics']}/metrics")).text
        for line in text.splitlines():
            if line.startswith("strata_processor_") and "_bucket" not in line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                if any(k in name for k in ("resets", "poison", "store_errors", "duplicates", "applied", "dead",
                                           "conflicts", "consumer_lag")):
                    out[name] = float(value)
    return out


async def _relay_rate(r: aioredis.Redis, n: int) -> float:
    """Outbox entries per second the processor's trigger relay publishes (a burst of ``n`` purchases' triggers)."""
    msg = orjson.dumps({"trigger_id": "post_purchase:soak:x", "type": "post_purchase", "tenant": "soak",
                        "user_id": "u", "session_id": "s", "ts": 0, "item_id": "SKU-000001", "quantity": 1,
                        "price": 1.0})
    for lo in range(0, n, 5000):
        await r.rpush(K.TRIGGER_OUTBOX_KEY, *[msg] * min(5000, n - lo))
    t0 = time.monotonic()
    while await r.llen(K.TRIGGER_OUTBOX_KEY):
        await asyncio.sleep(0.02)
    return round(n / (time.monotonic() - t0), 1)


async def _soak(stack: Stack, minutes: float, items: list[str], faults: tuple[str, ...]) -> dict:
    tag = f"soak{uuid.uuid4().hex[:6]}"
    urls = {p: f"http://127.0.0.1:{stack.ports[p]}" for p in ("streaming", "edge")}
    traffic = Traffic(urls["streaming"], urls["edge"], urls["streaming"], items, tag, RATES)
    r = aioredis.from_url(stack.store_url, socket_timeout=5)
    result: dict = {"relay_drain_per_s": await _relay_rate(r, RELAY_ENTRIES)}
    stop = asyncio.Event()
    runner = asyncio.create_task(traffic.run(stop))
    total = minutes * 60.0
    t0 = time.monotonic()
    n_cycles = max(1, int(total // 300))                      # every fault once per 5 minutes
    schedule = [f for _ in range(n_cycles) for f in faults]
    gap = total / (len(schedule) + 1)
    recoveries = []
    for k, fault in enumerate(schedule):
        await asyncio.sleep(max(0.0, t0 + (k + 1) * gap - time.monotonic()))
        traffic.phase = fault
        started = time.monotonic() - t0
        restarted = await stack.inject(fault)
        took = await _recovery(traffic, r, fault, k, restarted)
        recoveries.append({"fault": fault, "at_s": round(started, 1), "recovery_s": took})
        traffic.phase = "steady"
    await asyncio.sleep(max(0.0, t0 + total - time.monotonic()))
    stop.set()
    await runner
    users = list(traffic.accepted)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:                        # let the processor catch up
        views = await _views(r, users)
        if all(views[u] >= traffic.accepted[u] for u in users):
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(3.0)                                  # anything late (a replay) would show now
    views = await _views(r, users)
    result["processor_metrics"] = await _processor_metrics(stack)
    await r.aclose()
    lost = sum(max(0, traffic.accepted[u] - views[u]) for u in users)
    doubled = sum(max(0, views[u] - traffic.accepted[u]) for u in users)
    tiers = traffic.tally.report()
    bad_5xx = sum(p["5xx"] for tier in ("edge", "tier2") for p in tiers.get(tier, {}).values())
    result.update({
        "minutes": minutes, "faults": recoveries, "events_accepted": sum(traffic.accepted.values()),
        "requests_accepted": len(users), "lost": lost, "doubled": doubled, "requests_never_accepted":
        traffic.given_up, "ingest_503_retried": traffic.raw_503, "tiers": tiers,
        "edge_tier2_5xx": bad_5xx,
        "max_recovery_s": max((x["recovery_s"] or float("inf") for x in recoveries), default=0.0)})
    result["passed"] = (lost == 0 and doubled == 0 and traffic.given_up == 0 and bad_5xx == 0
                        and all(x["recovery_s"] is not None for x in recoveries))
    return result


def main(launcher: Launcher, registry: str, minutes: float = 10.0, json_path: str | None = None,
         faults: tuple[str, ...] = FAULTS) -> dict:
    from strata.streaming.catalog import load_catalog

    registry = str(Path(registry).resolve())
    items = list(load_catalog(registry, "edge-scorer").index)
    with tempfile.TemporaryDirectory(prefix="strata-soak-") as tmp:
        stack = Stack(launcher, registry, Path(tmp))
        result: dict = {}
        try:
            stack.start()
            result = asyncio.run(_soak(stack, minutes, items, faults))
        finally:
            problems = stack.stop()
            if json_path and not result.get("passed"):       # keep the processes' logs next to the report
                logs = Path(json_path).with_suffix(".logs")
                shutil.rmtree(logs, ignore_errors=True)
                shutil.copytree(tmp, logs, ignore=shutil.ignore_patterns("appendonlydir", "*.aof", "*.rdb"))
                result["logs"] = str(logs)
        if problems:
            result["stop_problems"] = problems
    result["machine"] = machine_info()
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def print_report(result: dict, console) -> None:
    from rich.table import Table

    console.print(f"soak: {result['minutes']} min, {result['requests_accepted']} event requests accepted "
                  f"({result['events_accepted']} counted views): lost {result['lost']}, doubled {result['doubled']}, "
                  f"never accepted {result['requests_never_accepted']}; ingest 503s retried "
                  f"{result['ingest_503_retried']}; trigger relay drained {result['relay_drain_per_s']:,.0f}/s")
    t = Table(title="faults")
    for col in ("fault", "at s", "recovery s"):
        t.add_column(col, justify="right")
    for f in result["faults"]:
        t.add_row(f["fault"], str(f["at_s"]), str(f["recovery_s"]))
    console.print(t)
    t = Table(title="answers per tier and phase")
    for col in ("tier", "phase", "answers", "5xx", "p50 ms", "p99 ms"):
        t.add_column(col, justify="right")
    for tier, phases in result["tiers"].items():
        for phase, p in phases.items():
            t.add_row(tier, phase, str(p["answers"]), str(p["5xx"]), str(p["p50_ms"]), str(p["p99_ms"]))
    console.print(t)
    console.print("PASS" if result["passed"] else "FAIL")
