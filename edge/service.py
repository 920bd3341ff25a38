"""EdgeService: request path, PoP caches, store reads, background refreshers and hot reload.

Path of a request: decode -> validate -> response cache -> session vector (PoP cache, store with a
short deadline, stale-while-revalidate) -> Ranker (scorer + bandit) -> encode. Transport-free: the
ASGI app in ``edge.app`` only moves bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from hashlib import blake2b
from typing import NamedTuple

from edge.answers import Answer
from edge.bundle_loader import LoadedBundle, load_bundle
from edge.caches import TTLCache
from edge.edge_metrics import EdgeMetrics
from edge.ranker import Ranker
from edge.session_client import SessionState, StoreHealth, make_store, read_with_deadline
from shared.bandit import BanditConfig
from shared.codecs import choose_response_type, decode, encode
from shared.confidence import ConfidenceConfig
from shared.config import EdgeSettings
from shared.contracts import RecommendRequest, parse_recommend
from shared.errors import StoreUnavailable, StrataError

logger = logging.getLogger(__name__)
_NO_SESSION = SessionState(None, None)


class Pending(NamedTuple):
    """A request parsed and missed in the caches whose session must come from the store."""

    t0: int
    out_type: str
    ranker: Ranker
    req: RecommendRequest
    key: tuple
    exact_key: tuple | None


class EdgeService:
    def __init__(self, cfg: EdgeSettings) -> None:
        self.cfg = cfg
        self.bandit_cfg = BanditConfig(cfg.bandit.n0, cfg.bandit.explore_budget, cfg.bandit.cold_prior)
        self.conf_cfg = ConfidenceConfig(**cfg.confidence.model_dump())
        self.store = make_store(cfg.store.url, cfg.store.timeout_ms / 1000)
        self.health = StoreHealth(cfg.store.retry_after_s)
        self.responses = TTLCache(cfg.cache.response_size, cfg.cache.response_ttl_s)
        exact_size = min(cfg.cache.exact_size, cfg.cache.response_size)
        self.exact = TTLCache(exact_size, cfg.cache.response_ttl_s) if exact_size else None
        self.sessions = TTLCache(cfg.cache.session_size, cfg.cache.session_max_stale_s)
        self.ranker: Ranker | None = None
        self.metrics = EdgeMetrics(self)
        self._prefix = os.urandom(6).hex()
        self._seq = itertools.count(1)
        self._pending: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task] = []
        self.refused_versions: set[str] = set()   # bad bundles, not retried until CURRENT changes

    # -- model ---------------------------------------------------------------------------------
    def load_model(self, version: str | None = None) -> LoadedBundle:
        bundle = load_bundle(self.cfg.registry, self.cfg.model, version, self.cfg.ort_threads)
        self.install(bundle)
        return bundle

    def install(self, bundle: LoadedBundle) -> None:
        """Swap in a new model atomically; counts carry over by item id on the next refresh."""
        self.ranker = Ranker(bundle, self.bandit_cfg, self.conf_cfg, self.cfg.pool_size, self.cfg.bandit.seed)
        self.metrics.model_loaded(bundle.version)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.ranker is None:
            await asyncio.to_thread(self.load_model)
        # Open the connection now so the first request's short deadline is not spent on connect.
        if self.store.configured and not await self.store.ping():
            self.health.failed(ConnectionError("store not reachable at start"))
        from edge.reload import watch_registry

        self._tasks = [asyncio.create_task(watch_registry(self), name="reload"),
                       asyncio.create_task(self._refresh_loop(), name="bandit-refresh")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    # -- request path --------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"{self._prefix}{next(self._seq):x}"

    async def handle_recommend(self, body: bytes, ctype: bytes | None, accept: bytes | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one ``POST /v1/recommend``."""
        out = self.recommend_now(body, ctype, accept)
        if isinstance(out, Pending):
            return await self.recommend_after_store(out)
        return out

    def recommend_now(self, body: bytes, ctype: bytes | None, accept: bytes | None) -> tuple[int, str, bytes] | Pending:
        """Answer without awaiting when possible: cache hits, a cached session, or no store configured.

        Returns ``Pending`` when the session must be read from the store; finish it with
        ``recommend_after_store``. The HTTP server calls this inline, with no Task per request.
        """
        t0 = time.perf_counter_ns()
        out_type = choose_response_type(accept, ctype)
        ranker = self.ranker
        if ranker is None:
            self.metrics.request(503, t0)
            err = {"error": {"code": "not_ready", "reason": "no model loaded yet"}}
            return 503, out_type, encode(err, out_type)
        # An identical body seen within the TTL skips decoding, validation and key building.
        exact_key = (blake2b(body, digest_size=16).digest(), ctype, ranker.version) if self.exact else None
        answer = self.exact.get(exact_key) if exact_key else None
        cache = "hit"
        if answer is None:
            try:
                req = parse_recommend(decode(body, ctype))
            except StrataError as exc:
                self.metrics.request(exc.status, t0)
                return exc.status, out_type, encode(exc.to_dict(), out_type)
            ctx = req.context
            key = (req.tenant, req.session_id, req.slot, ctx.channel, ctx.device, ctx.country,
                   ctx.hour // self.cfg.cache.hour_bucket, req.k, req.explain,
                   None if req.candidates is None else tuple(req.candidates), ranker.version)
            answer = self.responses.get(key)
            if answer is None:
                session = self._session_cached(req.tenant, req.session_id)
                if session is None:
                    return Pending(t0, out_type, ranker, req, key, exact_key)
                answer = self._rank(ranker, req, key, exact_key, out_type, *session)
                cache = "miss"
            elif exact_key:
                self.exact.put(exact_key, answer)
        return self._reply(answer, out_type, t0, cache)

    async def recommend_after_store(self, p: Pending) -> tuple[int, str, bytes]:
        state, age_s, degraded = await self._session_fetch(p.req.tenant, p.req.session_id)
        answer = self._rank(p.ranker, p.req, p.key, p.exact_key, p.out_type, state, age_s, degraded)
        return self._reply(answer, p.out_type, p.t0, "miss")

    def _rank(self, ranker: Ranker, req, key: tuple, exact_key, out_type: str, state: SessionState,
              age_s: float | None, degraded: bool) -> Answer:
        res = ranker.rank(req, state.vec, age_s)
        answer = Answer({"items": res.items, "tier": "edge", "confidence": res.confidence,
                         "route_reasons": res.route_reasons, "route_tier": res.route_tier,
                         "model_version": ranker.version, "unknown_candidates": res.unknown_candidates},
                        degraded, out_type)
        self.responses.put(key, answer)
        if exact_key:
            self.exact.put(exact_key, answer)
        self.metrics.ranked(res)
        return answer

    def _reply(self, answer: Answer, out_type: str, t0: int, cache: str) -> tuple[int, str, bytes]:
        degraded = answer.degraded or (self.store.configured and not self.health.up)
        payload = answer.render(out_type, degraded, self.next_id(), self.next_id(),
                                (time.perf_counter_ns() - t0) // 1000, cache)
        self.metrics.request(200, t0, degraded)
        return 200, out_type, payload

    def _session_cached(self, tenant: str, session_id: str) -> tuple[SessionState, float | None, bool] | None:
        """(state, vector age in s, degraded) without awaiting, or None when the store must be read.

        Fresh from the PoP cache; stale entries are served while a background read revalidates them."""
        store = self.store
        if not store.configured:
            return _NO_SESSION, None, False
        key = (tenant, session_id)
        entry = self.sessions.get_entry(key)
        if entry is not None:
            age, state = entry
            if age > self.cfg.cache.session_ttl_s and key not in self._pending and self.health.up:
                self._pending.add(key)
                asyncio.get_running_loop().create_task(self._revalidate(key))
            self.metrics.session_cache(True)
            return state, _age_s(state), not self.health.up
        self.metrics.session_cache(False)
        if not self.health.up:
            return _NO_SESSION, None, True
        return None

    async def _session_fetch(self, tenant: str, session_id: str) -> tuple[SessionState, float | None, bool]:
        """Read the session from the store within its deadline; on failure: no session, degraded."""
        try:
            state = await read_with_deadline(self.store.get_session(tenant, session_id),
                                             self.cfg.store.timeout_ms / 1000)
        except (StoreUnavailable, TimeoutError) as exc:
            self.health.failed(exc)
            return _NO_SESSION, None, True
        self.sessions.put((tenant, session_id), state)
        self.health.slow_reads = 0
        return state, _age_s(state), False

    async def _revalidate(self, key: tuple[str, str]) -> None:
        try:
            state = await read_with_deadline(self.store.get_session(*key), max(self.cfg.store.timeout_ms / 1000, 0.05))
            self.sessions.put(key, state)
        except (StoreUnavailable, TimeoutError) as exc:
            self.health.failed(exc)
        finally:
            self._pending.discard(key)

    async def _refresh_loop(self) -> None:
        """Refresh bandit counts of every active slot; probe the store while it is marked down."""
        from edge.bandit_cache import parse_counts

        if not self.store.configured:
            return
        while True:
            await asyncio.sleep(self.cfg.store.bandit_refresh_s)
            ranker = self.ranker
            if ranker is None:
                continue
            if not self.health.up and not await self.store.ping():
                continue
            try:
                for tenant, slot in list(ranker.counts.slots):
                    raw = await self.store.get_bandit_counts(tenant, slot)
                    ranker.counts.set(tenant, slot, parse_counts(raw, ranker.bundle.index, ranker.counts.n_items))
                self.health.recovered()
            except StoreUnavailable as exc:
                self.health.failed(exc)
            except Exception:  # never let the refresher die
                logger.exception("bandit refresh failed")


def _age_s(state: SessionState) -> float | None:
    if state.updated_ms is None:
        return None
    return max(time.time() - state.updated_ms / 1000.0, 0.0)
