"""Sample traffic for the demo: a warm session vector, a handful of requests, and the table of answers.

The requests cover both codecs, given candidates and the cached pool, several channels, a session with
a vector in the store and one without, and unknown candidate ids, so one screen shows what the edge does.
The client is stdlib ``http.client`` on one keep-alive connection: ``make run`` installs no HTTP client.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import redis
from rich.markup import escape
from rich.table import Table

from strata.shared.errors import StrataError
from strata.shared.keys import session_key
from strata.shared.models.bundle import ITEM_VECTORS_FILE, ITEMS_FILE, read_current
from strata.shared.ranking.features import EMBED_DIM
from strata.shared.serving import codecs

TENANT = "default"
WARM_SESSION = "demo-warm"
COLD_SESSION = "demo-cold"
UNKNOWN_IDS = ("no-such-item-1", "no-such-item-2", "no-such-item-3")


@dataclass(frozen=True)
class DemoBundle:
    """What the demo needs from the live bundle: ids, titles, categories and item embeddings."""

    version: str
    bundle_dir: Path
    item_ids: list[str]
    titles: dict[str, str]
    categories: list[str]
    item_vectors: np.ndarray

    @classmethod
    def load(cls, registry: Path, model: str) -> DemoBundle:
        version = read_current(registry, model)
        bundle_dir = registry / model / version
        table = pq.read_table(bundle_dir / ITEMS_FILE, columns=["item_id", "title", "category"])
        ids = [str(x) for x in table.column("item_id").to_pylist()]
        titles = dict(zip(ids, (str(t) for t in table.column("title").to_pylist()), strict=True))
        cats = [str(c) for c in table.column("category").to_pylist()]
        vectors = np.load(bundle_dir / ITEM_VECTORS_FILE)
        if vectors.shape != (len(ids), EMBED_DIM):
            raise ValueError(f"{ITEM_VECTORS_FILE} has shape {vectors.shape}, expected ({len(ids)}, {EMBED_DIM})")
        return cls(version, bundle_dir, ids, titles, cats, vectors)


def warm_session_vector(bundle: DemoBundle, n_rows: int = 5) -> tuple[np.ndarray, str]:
    """Unit vector: normalised mean of a few items of one category, so the session has a clear taste."""
    category = bundle.categories[0]
    rows = [i for i, c in enumerate(bundle.categories) if c == category][:n_rows]
    vec = bundle.item_vectors[rows].astype(np.float64).mean(axis=0)
    vec = (vec / np.linalg.norm(vec)).astype(np.float32)
    return vec, category


def write_session_vector(client: redis.Redis, tenant: str, session_id: str, vec: np.ndarray) -> None:
    """Write the session HASH exactly as the stream processor does (float32 little-endian bytes)."""
    client.hset(session_key(tenant, session_id), mapping={
        "vec": np.asarray(vec, dtype="<f4").tobytes(),
        "updated_ms": int(time.time() * 1000),
    })


@dataclass
class Sample:
    label: str
    codec: str  # codecs.JSON or codecs.MSGPACK
    body: dict


@dataclass
class Answer:
    sample: Sample
    status: int = 0
    body: dict = field(default_factory=dict)
    client_ms: float = 0.0
    error: str | None = None


def sample_requests(bundle: DemoBundle, seed: int = 7) -> list[Sample]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(bundle.item_ids), size=60, replace=False)
    cands = [bundle.item_ids[i] for i in picks]
    with_unknown = cands[:30] + list(UNKNOWN_IDS)

    def body(session: str, channel: str, device: str, hour: int, candidates: list[str] | None,
             explain: bool = False) -> dict:
        b: dict = {"tenant": TENANT, "user_id": f"user-{session}", "session_id": session, "slot": "home",
                   "k": 5, "context": {"channel": channel, "device": device, "country": "US", "hour": hour}}
        if candidates is not None:
            b["candidates"] = candidates
        if explain:
            b["explain"] = True
        return b

    j, m = codecs.JSON, codecs.MSGPACK
    return [
        Sample("warm session, pool, web", j, body(WARM_SESSION, "web", "desktop", 10, None)),
        Sample("warm session, 60 cands, app", m, body(WARM_SESSION, "app", "mobile", 20, cands)),
        Sample("cold session, 60 cands, email", j, body(COLD_SESSION, "email", "other", 8, cands)),
        Sample("cold session, pool, sms", m, body(COLD_SESSION, "sms", "mobile", 18, None)),
        Sample("warm, 30 cands + 3 unknown, pos", j, body(WARM_SESSION, "pos", "tablet", 14, with_unknown)),
        Sample("cold, 30 cands + 3 unknown, explain", m, body(COLD_SESSION, "web", "tablet", 22,
                                                               with_unknown, explain=True)),
    ]


def send_samples(host: str, port: int, samples: list[Sample], timeout_s: float = 5.0) -> list[Answer]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    answers = []
    try:
        for s in samples:
            ans = Answer(s)
            payload = codecs.encode(s.body, s.codec)
            try:
                t0 = time.perf_counter()
                conn.request("POST", "/v1/recommend", body=payload,
                             headers={"Content-Type": s.codec, "Accept": s.codec})
                resp = conn.getresponse()
                raw = resp.read()
                ans.client_ms = (time.perf_counter() - t0) * 1000.0
                ans.status = resp.status
                got = codecs.media_type(resp.getheader("Content-Type"))
                if resp.status != 200:
                    ans.error = f"HTTP {resp.status}: {raw[:300].decode('utf-8', 'replace')}"
                elif got != s.codec:
                    ans.error = f"asked for {s.codec}, got Content-Type {got!r}"
                else:
                    decoded = codecs.decode(raw, got)
                    if not isinstance(decoded, dict):
                        raise ValueError(f"response is a {type(decoded).__name__}, not an object")
                    ans.body = decoded
            except (OSError, http.client.HTTPException, ValueError, StrataError) as exc:
                ans.error = f"{type(exc).__name__}: {exc}"
                conn.close()  # reconnects on the next request
            answers.append(ans)
    finally:
        conn.close()
    return answers


def _short_codec(media: str) -> str:
    return "msgpack" if media == codecs.MSGPACK else "json"


def _route(body: dict) -> str:
    reasons = ", ".join(map(str, body.get("route_reasons", [])))
    tier = body.get("route_tier")
    return f"-> {tier}: {reasons}" if tier else reasons


def answers_table(answers: list[Answer], bundle: DemoBundle, top: int = 3) -> Table:
    table = Table(title=f"edge answers (model {bundle.version})", show_lines=True,
                  caption="the first request also pays for warm-up (first store read, first ONNX run)")
    table.add_column("#", justify="right")
    table.add_column("codec", no_wrap=True, min_width=7)
    table.add_column("request")
    table.add_column("top items (* explored)")
    table.add_column("tier", no_wrap=True)
    table.add_column("conf", justify="right", no_wrap=True)
    table.add_column("route_reasons")
    table.add_column("degraded", no_wrap=True)
    table.add_column("unknown", justify="right", no_wrap=True)
    table.add_column("client ms", justify="right", no_wrap=True)
    table.add_column("server µs", justify="right", no_wrap=True)
    for i, ans in enumerate(answers, 1):
        codec = _short_codec(ans.sample.codec)
        if ans.error is not None:
            table.add_row(str(i), codec, escape(ans.sample.label), f"[red]{escape(ans.error)}[/red]", *[""] * 7)
            continue
        b = ans.body
        lines = []
        for item in b.get("items", [])[:top]:
            iid = str(item.get("item_id"))
            mark = "*" if item.get("explored") else ""
            lines.append(escape(f"{mark}{iid} {bundle.titles.get(iid, '?')} ({item.get('score', 0):.3f})"))
        table.add_row(
            str(i), codec, escape(ans.sample.label), "\n".join(lines), str(b.get("tier")),
            "-" if b.get("confidence") is None else f"{b['confidence']:.2f}", escape(_route(b)),   # origin: null
            str(b.get("degraded")), str(b.get("unknown_candidates", "")), f"{ans.client_ms:.2f}",
            str((b.get("timing") or {}).get("server_us", "")),
        )
    return table


def router_table(answers: list[Answer], bundle: DemoBundle, top: int = 2) -> Table:
    """The sample requests the router escalated (``route_tier`` not ``edge``): which tier it chose, which
    tier answered (``tier``: the upper tier, or the edge itself when the upper tier missed its deadline,
    failed or was over budget: ``degraded``), and the time it took, client-side and server-side."""
    def is_escalated(a: Answer) -> bool:
        return a.error is None and a.body.get("route_tier", "edge") != "edge"

    escalated = [a for a in answers if is_escalated(a)]
    answered_above = sum(1 for a in escalated if a.body.get("tier") != "edge")
    table = Table(title=f"router: {len(escalated)} of {len(answers)} requests escalated, "
                        f"{answered_above} answered by the upper tier", show_lines=True,
                  caption="route_tier: where the router sent it; tier: who answered; the edge answers itself "
                          "(degraded) when the upper tier misses its deadline or is not configured")
    for col in ("#", "request", "route_tier", "tier", "degraded", "top items", "route_reasons", "client ms",
                "server µs"):
        table.add_column(col, no_wrap=col in ("#", "route_tier", "tier", "degraded", "client ms", "server µs"))
    for i, ans in enumerate(answers, 1):
        if not is_escalated(ans):
            continue
        b = ans.body
        lines = [escape(f"{it.get('item_id')} {bundle.titles.get(str(it.get('item_id')), '?')}")
                 for it in b.get("items", [])[:top]]
        table.add_row(str(i), escape(ans.sample.label), str(b.get("route_tier")), str(b.get("tier")),
                      str(b.get("degraded")), "\n".join(lines), escape(", ".join(map(str, b.get("route_reasons", [])))),
                      f"{ans.client_ms:.2f}", str((b.get("timing") or {}).get("server_us", "")))
    return table
