"""``strata simulate``: shoppers with known tastes use the running system for ``duration`` seconds under every
policy at once (each policy its own tenant, so their bandit counts and sessions never mix), then the
report: the JSON contract, a rich table and a PNG.

The system is the one at ``--edge``/``--events`` (and ``--origin``, ``--edge-only`` for the policies that need
them), or one this command starts itself: ``strata up`` plus a second edge node with the router off (the
``edge`` policy and the probe). Everything goes over HTTP to real processes; nothing of a tier runs here.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from strata.deploy.errors import EngineMissing
from strata.deploy.run_dir import RunDir
from strata.deploy.simulation import metrics as M
from strata.deploy.simulation.policies import HTTP_POLICIES, POLICIES
from strata.deploy.simulation.shopper import PROBE, Run, Shopper
from strata.deploy.simulation.truth import Truth
from strata.deploy.up import UP_PREFIX, Stack, signals_as_interrupt
from strata.shared.config import load_settings
from strata.shared.ranking.confidence import ConfidenceConfig

_HIT = re.compile(rb'^strata_edge_cache_requests_total\{cache="response",result="(hit|miss)"\} ([0-9.e+]+)$', re.M)


@dataclass(frozen=True, slots=True)
class Options:
    policies: tuple[str, ...] = POLICIES
    users: int = 20
    duration_s: float = 120.0
    seed: int = 7
    think_s: float = 1.0
    k: int = 10


@dataclass(frozen=True, slots=True)
class Targets:
    """Base URLs. ``routed``: the edge with its router; ``edge``: an edge with the router off."""

    events: str
    routed: str | None = None
    edge: str | None = None
    streaming: str | None = None
    origin: str | None = None

    def url(self, policy: str) -> str | None:
        return getattr(self, policy) if policy in HTTP_POLICIES else None


def parse_policies(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in names if p not in POLICIES]
    if unknown or not names:
        from strata.shared.errors import InvalidField

        raise InvalidField(f"unknown policy {', '.join(unknown) or '(none)'}; policies: {','.join(POLICIES)}",
                           field="policy")
    return names


async def _cache_counts(client: httpx.AsyncClient) -> tuple[float, float] | None:
    """(hits, misses) of the edge's response cache from its /metrics; None if it cannot be read."""
    try:
        resp = await client.get("/metrics")
        found = {m.group(1): float(m.group(2)) for m in _HIT.finditer(resp.content)}
        return found.get(b"hit", 0.0), found.get(b"miss", 0.0)
    except httpx.HTTPError:
        return None


def _ratio(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None:
        return None
    hits, misses = after[0] - before[0], after[1] - before[1]
    return hits / (hits + misses) if hits + misses > 0 else None


async def simulate(truth: Truth, targets: Targets, opts: Options, confidence: ConfidenceConfig,
                   skipped: dict[str, str] | None = None) -> dict:
    """Run every policy of ``opts`` that has a target; returns the report (the JSON contract plus
    ``_extra``: reliability, probe and event counts, skipped policies; ``contract()`` strips it)."""
    skipped = dict(skipped or {})
    run_policies = []
    for p in opts.policies:
        if p in HTTP_POLICIES and targets.url(p) is None:
            skipped.setdefault(p, f"no URL for the {p} policy")
        else:
            run_policies.append(p)
    probe = targets.edge is not None and targets.origin is not None
    limits = httpx.Limits(max_connections=opts.users * 2, max_keepalive_connections=opts.users * 2)
    urls = {p: targets.url(p) for p in run_policies if p in HTTP_POLICIES}
    urls |= {"events": targets.events}
    if probe:
        urls |= {"edge": targets.edge, "origin": targets.origin}
        if targets.streaming is not None:
            urls["streaming"] = targets.streaming
    clients: dict[str, httpx.AsyncClient] = {}
    shadow: dict[str, httpx.AsyncClient] = {}
    try:
        for name, url in urls.items():
            clients[name] = httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits)
        for name in ("origin", "streaming"):       # the probe's shadow requests: pools apart from the policies'
            if probe and name in urls:
                shadow[name] = httpx.AsyncClient(base_url=urls[name], timeout=5.0, limits=limits)
        run = Run(truth, opts.seed, opts.k, opts.think_s, opts.duration_s, os.urandom(3).hex(), clients, shadow)
        edges = {p: clients[p] for p in ("routed", "edge") if p in clients}
        before = {p: await _cache_counts(c) for p, c in edges.items()}
        shoppers = [Shopper(run, p, i) for p in run_policies for i in range(opts.users)]
        if probe:
            shoppers += [Shopper(run, PROBE, i) for i in range(opts.users)]
        run.t0 = time.monotonic()
        await asyncio.gather(*(s.browse() for s in shoppers))
        elapsed = run.now()
        after = {p: await _cache_counts(c) for p, c in edges.items()}
    finally:
        for c in (*clients.values(), *shadow.values()):
            await c.aclose()
    policies = {}
    for p in run_policies:
        steps = [s for s in run.steps if s.policy == p]
        policies[p] = M.policy_metrics(steps, opts.duration_s, _ratio(before.get(p), after.get(p)))
    return {
        "policies": policies,
        "frontier": M.frontier(run.probes, confidence.t_edge, confidence),
        "t_edge": confidence.t_edge,
        "seed": opts.seed,
        "users": opts.users,
        "duration_s": opts.duration_s,
        "_extra": {"reliability": M.reliability(run.probes), "probe_pages": len(run.probes),
                   "frontier_origin_only": M.frontier(run.probes, confidence.t_edge, confidence, origin_only=True),
                   "events_sent": run.events_sent, "event_errors": run.event_errors, "skipped": skipped,
                   "errors": {p: sum(s.error for s in run.steps if s.policy == p) for p in run_policies},
                   "by_session_state": {p: M.by_session_state([s for s in run.steps if s.policy == p])
                                        for p in run_policies},
                   "server_p95_ms": {p: M.server_p95([s for s in run.steps if s.policy == p]) for p in run_policies},
                   "elapsed_s": round(elapsed, 1), "model_version": truth.version, "run_id": run.run_id,
                   "think_s": opts.think_s},
    }


def contract(report: dict) -> dict:
    """The JSON contract: exactly its keys."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write_json(path: Path, report: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(contract(report), indent=2) + "\n")


def run_simulate(registry: Path, targets: Targets | None, opts: Options, console: Console,
                 json_path: Path | None = None, plot_path: Path | None = None) -> dict:
    """Start the system if no targets are given (``strata up`` + a router-off edge), simulate, report."""
    from strata.deploy.simulation import report as R

    registry = registry.resolve()
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise EngineMissing("--plot needs matplotlib: pip install 'strata[eval]'", field="plot") from None
    if targets is not None:
        settings = load_settings()
        truth = Truth.load(registry, opts.users, opts.seed, settings.guardrails)
        result = _simulate_with_progress(truth, targets, opts, settings.edge.confidence, console)
    else:
        with signals_as_interrupt(), RunDir(prefix=UP_PREFIX) as run_dir, \
                Stack(registry, run_dir, console=console) as stack:
            console.print(f"strata up: edge (router on) {stack.url('edge')}, streaming {stack.url('streaming')}, "
                          f"origin {stack.url('origin')}; run directory {run_dir}")
            plain = stack.add_edge("edge-plain", router=False)
            console.print(f"edge with the router off: {plain}")
            truth = Truth.load(registry, opts.users, opts.seed, stack.settings.guardrails)
            targets = Targets(events=stack.url("streaming"), routed=stack.url("edge"), edge=plain,
                              streaming=stack.url("streaming"), origin=stack.url("origin"))
            result = _simulate_with_progress(truth, targets, opts, stack.settings.edge.confidence, console)
            restarts = {n: s.restarts for n, s in stack.services.items() if s.restarts}
            result["_extra"]["restarts"] = restarts
    console.print(R.render(result))
    for name, why in result["_extra"]["skipped"].items():
        console.print(f"[yellow]policy {name} skipped: {why}[/yellow]")
    if json_path is not None:
        write_json(json_path, result)
        console.print(f"JSON written to {json_path}")
    if plot_path is not None:
        R.plot(result, plot_path)
        console.print(f"plot written to {plot_path}")
    return result


def _simulate_with_progress(truth: Truth, targets: Targets, opts: Options, confidence: ConfidenceConfig,
                            console: Console) -> dict:
    with console.status(f"simulating {opts.users} shoppers x {len(opts.policies)} policies for "
                        f"{opts.duration_s:.0f} s (think {opts.think_s} s)"):
        try:
            import uvloop  # a faster loop: less of the simulator's own time in the client latencies
        except ImportError:
            return asyncio.run(simulate(truth, targets, opts, confidence))
        return uvloop.run(simulate(truth, targets, opts, confidence))
