"""One-item explain latency, template reasoner vs the tiny model on a real vLLM server, in-process: a
benchmark that prints a table (it asserts nothing, so it is not part of the test suite).

    .venv/bin/python -m tests.support.vllm.bench_explain --registry registry [--requests 20]

(``make bench-vllm``.) Builds the vLLM venv and the tiny model when they are not cached (~3 min, PyPI),
starts the server (~1 min on 2 cores), measures, and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import load_settings
from strata.shared.errors import StrataError
from tests.support.vllm.local import MODEL_SAYS, SERVED_NAME, VllmServer, ensure_tiny_model, ensure_venv

DEADLINE_MS = 30_000       # the tiny model on 2 shared CPU cores; the first request compiles the grammar


def bakery_item(registry: Path) -> str:
    """A servable item of the category the tiny model names (so its answer is grounded, not a fallback)."""
    node = OriginNode(load_settings(origin={"registry": str(registry)}))
    try:
        cat = node.load().catalog
        for r in range(len(cat)):
            f = cat.facts(r)
            if f["category"] == MODEL_SAYS and not cat.age_restricted[r] and cat.stock[r] > 0:
                return f["item_id"]
    finally:
        asyncio.run(node.stop())
    raise SystemExit(f"no servable {MODEL_SAYS!r} item in {registry}")


def explain_ms(client: TestClient, body: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        d = client.post("/v1/explain", json=body).json()
        out.append((time.perf_counter() - t0) * 1000)
        if d.get("fallback") is not None:
            raise SystemExit(f"the answer fell back ({d['fallback']}): not a latency of the reasoner")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        body = {"user_id": "u-bench", "session_id": "s-bench", "item_ids": [bakery_item(args.registry)]}
    except StrataError as exc:
        print(f"bench_explain: {exc.reason}", file=sys.stderr)
        return 2
    venv = ensure_venv()
    model = ensure_tiny_model(venv)
    with tempfile.TemporaryDirectory(prefix="strata-vllm-bench-") as tmp, \
            VllmServer(venv, model, log_path=Path(tmp) / "vllm.log").start() as server:
        rows = []
        for name, reasoner in [("template", {}), ("vllm", {"url": server.base_url, "model": SERVED_NAME,
                                                            "deadline_ms": DEADLINE_MS, "cache_ttl_s": 0})]:
            settings = load_settings(origin={"registry": str(args.registry), "reasoner": reasoner})
            with TestClient(build_app(OriginNode(settings))) as client:
                explain_ms(client, body, 3)                        # warm-up (grammar compile on the server)
                ms = sorted(explain_ms(client, body, args.requests))
            rows.append((name, statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]))
    print(f"explain latency, one item, {args.requests} requests, in-process")
    print(f"{'reasoner':<10} {'p50 ms':>8} {'p95 ms':>8}")
    for name, p50, p95 in rows:
        print(f"{name:<10} {p50:>8.1f} {p95:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
