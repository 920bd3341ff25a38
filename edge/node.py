"""An edge node: builds the parts, wires them one way, and runs their background work.

This is the composition root and nothing reaches back into it: the request path (``recommend``, a
``Handler``) gets the slot, caches and store it uses; metrics get callables; hot reload works through
the model slot; front doors get the handler, the ops view (``readiness``, ``exposition``) and the
metrics recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from strata.edge.app import build_app
from strata.edge.bandit_cache import BanditCounts
from strata.edge.bandit_refresh import BanditRefresher
from strata.edge.caches import TTLCache
from strata.edge.config_watch import ConfigWatch
from strata.edge.edge_metrics import EdgeMetrics
from strata.edge.escalated_answers import EscalatedAnswers
from strata.edge.invalidation import InvalidationListener
from strata.edge.model_slot import LiveModel, ModelSlot
from strata.edge.recommend import TIER, RecommendHandler
from strata.edge.reload import RegistryWatch
from strata.edge.response_cache import ResponseCache
from strata.edge.session_client import StoreHealth, make_store
from strata.edge.session_source import PopSessions
from strata.edge.stages.ctx import EdgeCtx
from strata.edge.stages.escalated_cache import EscalatedCacheStage
from strata.edge.stages.exact_cache import ExactCache
from strata.edge.stages.response_cache import ResponseCacheStage
from strata.shared.auth.gate import gate_from_settings, warn_auth_off
from strata.shared.auth.impressions import signer_from_settings
from strata.shared.catalog_feed import CatalogFeed
from strata.shared.catalog_feed import configured as feed_configured
from strata.shared.config import SettingsSource, StrataSettings
from strata.shared.contracts.api import MAX_CANDIDATES
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.models.scoring_bundle import LoadedBundle
from strata.shared.ranking.ranker import Ranker
from strata.shared.ranking.stages.ctx import Upstream
from strata.shared.ranking.stages.escalate import Escalate, UpstreamClient
from strata.shared.ranking.stages.guardrail_filter import GuardrailFilter
from strata.shared.router.router import Router
from strata.shared.serving.answers import Answer, RequestIds
from strata.shared.serving.encode import Encode
from strata.shared.serving.error_mapper import negotiated_error_reply
from strata.shared.serving.impression_log import ImpressionLog
from strata.shared.serving.pipeline import Reply

logger = logging.getLogger(__name__)
SUBSCRIBE_WAIT_S = 2.0     # how long start() waits for the invalidation subscription (store up)


async def cancel_and_wait(tasks: list[asyncio.Task], rounds: int = 3, wait_s: float = 1.0) -> None:
    """Cancel background tasks and wait for them, bounded. A cancellation can be lost on Python 3.11 when
    it meets a timeout expiring in the same loop iteration inside the task (``asyncio.timeout`` then
    raises TimeoutError, which a retry loop catches): cancel again, and never wait forever."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            return
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
        if pending:
            logger.info("background tasks still running after a cancel: %s",
                        ", ".join(sorted(t.get_name() for t in pending)))
    if pending:
        logger.warning("background tasks did not stop: %s", ", ".join(sorted(t.get_name() for t in pending)))


class EdgeNode:
    def __init__(self, settings: StrataSettings, source: SettingsSource | None = None,
                 upstream: UpstreamClient | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``upstream``: the router's client; None: the router built from the ``router`` section when it names
        upstream URLs, else none (the edge answers every request itself). ``clock`` (seconds, monotonic) ages
        cached session vectors; tests pass a fake one."""
        cfg = self.cfg = settings.edge
        if upstream is None:
            router = Router(settings.router, tier=TIER)
            upstream = router if router.configured else None
        self.upstream = upstream
        # upper tiers' answers kept per session (the next page of an escalated session is fast)
        self.escalated = EscalatedAnswers(cfg.cache.response_size, settings.router.answer_ttl_s) \
            if upstream is not None else None
        self.gate = gate_from_settings(settings, "the edge")
        self.auth_enabled = settings.auth.enabled
        self.metrics = EdgeMetrics()
        self.store = make_store(cfg.store.url, cfg.store.timeout_ms / 1000)
        self.health = StoreHealth(self.store.ping, cfg.store.retry_after_s, cfg.store.probe_timeout_ms / 1000)
        pinned = [(tenant, slot) for tenant, slots in cfg.bandit.slots.items() for slot in slots]

        def make_ranker(bundle: LoadedBundle) -> tuple[Ranker, BanditCounts]:
            return (Ranker(bundle, cfg.bandit, max(MAX_CANDIDATES, cfg.pool_size)),
                    BanditCounts(len(bundle.item_ids), pinned, cfg.bandit.recent_slots))

        self.slot = ModelSlot(make_ranker, settings.guardrails, cfg.pool_size, on_install=self.metrics.model_loaded)
        self.responses = ResponseCache(cfg.cache)
        self.sessions = TTLCache(cfg.cache.session_size, cfg.cache.session_max_stale_s, clock=clock)
        session_source = PopSessions(self.store, self.health, self.sessions, cfg.cache, cfg.store.timeout_ms / 1000)
        store_health = self.health if self.store.configured else None   # None: never degraded
        broker = cfg.impressions.broker.strip()
        self.impressions = ImpressionLog(cfg.impressions) if broker.lower() not in ("", "none") else None
        self.recommend = RecommendHandler(
            self.slot,
            exact_cache=ExactCache(self.responses, store_health),
            response_cache=ResponseCacheStage(self.responses, store_health),
            sessions=session_source,
            guardrails=GuardrailFilter(self.metrics.removed, self.metrics.removed_codes),
            confidence=cfg.confidence,
            encode=Encode(TIER, RequestIds(), self.impressions, health=store_health, on_ranked=self._ranked,
                          on_degraded=self._degraded, signer=signer_from_settings(settings.auth)),
            escalate=Escalate(TIER, upstream, background=settings.router.mode == "background",
                              remember=self._remember),
            escalated_cache=EscalatedCacheStage(self.escalated, self._served_again)
            if self.escalated is not None else None,
        )
        self.metrics.bind(
            response_cache=lambda: (self.responses.hits, self.responses.misses),
            session_cache=lambda: (session_source.hits, session_source.misses),
            store_up=lambda: self.health.up, store_errors=lambda: self.health.errors,
            store_probes=lambda: self.health.probes,
            stages=self.recommend.pipeline.timings)
        if self.impressions is not None:
            self.metrics.bind_impressions(self.impressions)
        self.registry_watch = RegistryWatch(self.slot, cfg.registry, cfg.model, cfg.ort_threads,
                                            on_result=self.metrics.reload)
        # without a source (tests, tools) there is no file to watch
        self.config_watch = ConfigWatch(source, self.slot, settings, on_result=self.metrics.policy_reload) \
            if source is not None else None
        self.invalidations = InvalidationListener(cfg.store.url, self.invalidate_session) \
            if self.store.configured else None
        # the catalog topic (``catalog.broker``): stock, categories, age flags and new items, in log order
        self.catalog_feed = CatalogFeed(settings.catalog, self._apply_catalog, name="edge-catalog") \
            if feed_configured(settings.catalog) else None
        self._refresher = BanditRefresher(self.slot, self.store, self.health, on_refresh=self.metrics.bandit_refresh)
        self._running: contextlib.AsyncExitStack | None = None    # what start() opened, closed by stop()

    # -- model ----------------------------------------------------------------------------------
    def load_model(self, version: str | None = None) -> LoadedBundle:
        bundle = self.registry_watch.load(version)
        self.slot.install(bundle)
        return bundle

    async def _apply_catalog(self, updates: list[ItemUpdate]) -> list[None]:
        """Catalog topic records: the live model is rebuilt with them (on the loop: the swap is one store)."""
        self.slot.apply_catalog(updates)
        return [None] * len(updates)

    @property
    def ranker(self) -> LiveModel | None:
        """The live model (bundle, version, counts), None before the first install."""
        return self.slot.current

    def _ranked(self, ctx: EdgeCtx, answer: Answer) -> None:
        """A fresh edge answer: cached under its keys (unless the router wanted an upper tier's answer for this
        request: the next one asks again, or gets that answer from ``escalated``), counted."""
        if ctx.escalation is None:
            self.responses.remember(ctx.key, ctx.exact_key, answer)
        self.metrics.ranked(len(ctx.items), ctx.explored, ctx.unknown_candidates, ctx.filled)

    def _remember(self, ctx: EdgeCtx, up: Upstream) -> None:
        """An upper tier's answer (checked by the edge's guardrails): served again to the session's same request."""
        if self.escalated is not None:
            self.escalated.put(ctx.key, up)

    def _served_again(self, tier: str) -> None:
        served = getattr(self.upstream, "served_cached", None)
        if served is not None:
            served(tier)

    def _degraded(self, upstream_tier: str | None) -> None:
        """An answer left with ``degraded: true``: counted by the edge; an upper tier's also by the router."""
        self.metrics.degraded()
        passed_on = getattr(self.upstream, "passed_on_degraded", None)
        if upstream_tier is not None and passed_on is not None:
            passed_on(upstream_tier)

    # -- lifecycle ------------------------------------------------------------------------------
    def announce(self) -> None:
        """What a serving edge says once: with auth off, that every route is open."""
        if not self.auth_enabled:
            warn_auth_off("the edge")

    async def start(self, announce: bool = True) -> None:
        """Open the store connections and start the background work. Each part is registered right after it
        is opened, so ``stop`` (or a failure half-way through here) closes them in reverse order, each
        whatever the ones before it raised. ``announce``: say ``announce`` now (the edge's own server says it
        once its port is bound)."""
        if announce:
            self.announce()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.store.close)
            stack.push_async_callback(self._stop_router)      # background fetches, upstream connections
            if self.slot.current is None:
                await asyncio.to_thread(self.load_model)
            # Open the connections now so the first requests' short deadline is not spent on connects; the
            # store counts as up only once it answered.
            if self.store.configured:
                if await self.store.warm(self.cfg.store.warm_connections):
                    self.health.succeeded()
                else:
                    self.health.failed(ConnectionError("store not reachable at start"))
            stack.push_async_callback(self.health.stop)
            if self.impressions is not None:
                stack.push_async_callback(self.impressions.stop)   # sends what is buffered (bounded), then closes
            if self.catalog_feed is not None:
                stack.push_async_callback(self.catalog_feed.stop)
                await self.catalog_feed.start()     # replays the catalog topic (not ready until it has)
            if self.config_watch is not None:
                # SIGHUP: re-read the config file now (the guardrail policy applies without a restart)
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):   # not the main thread
                    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.config_watch.check_once, True)
                    stack.callback(asyncio.get_running_loop().remove_signal_handler, signal.SIGHUP)
            tasks: list[asyncio.Task] = []
            stack.push_async_callback(cancel_and_wait, tasks)
            poll = self.cfg.reload_poll_s
            tasks += [asyncio.create_task(self.registry_watch.run(poll), name="reload"),
                      asyncio.create_task(self._refresher.run(self.cfg.store.bandit_refresh_s), name="bandit-refresh")]
            if self.store.configured:
                tasks.append(asyncio.create_task(self.health.run(), name="store-prober"))
            if self.invalidations is not None:
                tasks.append(asyncio.create_task(self.invalidations.run(), name="invalidations"))
            if self.impressions is not None:
                tasks.append(asyncio.create_task(self.impressions.run(), name="impression-log"))
            if self.config_watch is not None:
                tasks.append(asyncio.create_task(self.config_watch.run(poll), name="config-watch"))
            if self.invalidations is not None and self.health.up:
                # Serve only once subscribed: an invalidation published before would be lost (the session's
                # cached vector and answers kept until their TTL), and the first requests would share the
                # loop's turns with the subscription's connect. Bounded: a store that answered the warm-up but
                # not this still gets an edge (the listener keeps trying in the background).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.invalidations.subscribed.wait(), SUBSCRIBE_WAIT_S)
            self._running = stack.pop_all()

    async def stop(self) -> None:
        """Cancel the background work, then close what ``start`` opened, in reverse order. Without a
        ``start`` (tests, tools) only a probe a failed read began, the router's connections and the store
        client are closed."""
        running, self._running = self._running, None
        if running is None:
            await self.health.stop()
            await self._stop_router()
            await self.store.close()
            return
        await running.aclose()

    async def _stop_router(self) -> None:
        stop_router = getattr(self.upstream, "stop", None)
        if stop_router is not None:
            await stop_router()

    def invalidate_session(self, tenant: str, session_id: str) -> None:
        """The session's vector changed in the store: drop its cached vector and answers."""
        self.sessions.discard((tenant, session_id))
        self.responses.drop_session(tenant, session_id)
        if self.escalated is not None:
            self.escalated.drop_session(tenant, session_id)

    # -- ops view (what /readyz and /metrics read) -----------------------------------------------
    def readiness(self) -> tuple[int, dict]:
        store = "none" if not self.store.configured else ("ok" if self.health.up else "down")
        version = self.slot.version
        if version is None:
            return 503, {"ready": False, "reason": "no model loaded", "store": store}
        feed = self.catalog_feed
        if feed is not None and not feed.replayed:
            return 503, {"ready": False, "reason": "catalog topic not replayed yet", "store": store,
                         "catalog": feed.status()}
        body = {"ready": True, "model_version": version, "store": store, "degraded": store == "down"}
        if feed is not None:
            body["catalog"] = feed.status()
        if store == "down":
            body["store_error"] = self.health.last_error
        return 200, body

    def exposition(self) -> bytes:
        router = getattr(self.upstream, "exposition", None)
        out = self.metrics.exposition() + (router() if router is not None else b"")
        if self.catalog_feed is not None:
            out += self.catalog_feed.exposition("strata_edge")
        return out + self.gate.exposition() if self.gate is not None else out

    def asgi_app(self):
        """This node behind the ASGI front door (under uvicorn, or the edge server's bridge)."""
        return build_app(self.recommend, self, self.metrics, self.cfg.max_body_bytes, lifecycle=self, gate=self.gate)

    # -- in-process convenience (tests, tools) -------------------------------------------------------
    async def handle_recommend(self, body: bytes, ctype: bytes | None, accept: bytes | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one ``POST /v1/recommend``, errors mapped as a front door would."""
        try:
            out = self.recommend.try_now(body, ctype, accept)
            reply: Reply = out if isinstance(out, Reply) else await self.recommend.finish(out)
        except Exception as exc:
            reply = negotiated_error_reply(exc, accept, ctype)
        return reply.status, reply.media, reply.body
