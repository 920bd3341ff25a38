"""An origin node: builds the parts and wires them one way (the composition root; nothing reaches back).

Start: load the bundle (checksums verified), index its item vectors, open the text search (the text-encoder
bundle's shipped shard, when the registry has one), compile the guardrails. Then
``recommend`` and ``explain`` (``Handler``s), ``upsert_items`` for ``POST /v1/items``, and the ops view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import msgpack

from strata.origin.bundle import load_origin_bundle
from strata.origin.catalog import Catalog
from strata.origin.catalog_log import CatalogLog, catalog_log_path
from strata.origin.covisitation import load_covisitation
from strata.origin.explain_admission import ExplainAdmission
from strata.origin.metrics import OriginMetrics
from strata.origin.models import OriginModels, load_origin_models
from strata.origin.pii.redactor import shared_redactor
from strata.origin.profiles import ProfileSource, make_profile_store
from strata.origin.reasoner.base import Reasoner
from strata.origin.reasoner.budget import TokenBudget
from strata.origin.reasoner.template import TemplateReasoner
from strata.origin.recommend import Ranking, explain_handler, recommend_handler
from strata.origin.retrieval import build_index, open_item_index, private_shard_dir
from strata.origin.stages.ann_source import AnnSource
from strata.origin.stages.covisit_source import CovisitationSource
from strata.origin.stages.ctx import OriginCtx
from strata.origin.stages.encode import Encode
from strata.origin.stages.guardrails import GuardrailFilter
from strata.origin.stages.mmr import MmrSelector
from strata.origin.stages.popular_source import PopularSource
from strata.origin.stages.profile import ProfileStage
from strata.origin.stages.purchased import AlreadyPurchasedFilter
from strata.origin.stages.rank import Rank
from strata.origin.stages.reason import ReasonStage
from strata.origin.stages.select import Select
from strata.origin.stages.two_tower_source import TwoTowerSource
from strata.origin.state import OriginState
from strata.origin.text_search import TextSearch, load_text_search
from strata.origin.tower_index import build_tower_index, open_tower_index
from strata.shared.auth.gate import gate_from_settings, warn_auth_off
from strata.shared.auth.impressions import signer_from_settings
from strata.shared.catalog_feed import CatalogFeed
from strata.shared.catalog_feed import configured as feed_configured
from strata.shared.config import OriginSettings, StrataSettings
from strata.shared.contracts.origin import ItemUpdate
from strata.shared.errors import ConfigError, StrataError
from strata.shared.keys import ERASURE_CHANNEL
from strata.shared.models.vector_index import VectorIndex
from strata.shared.online_store.client import configured
from strata.shared.online_store.subscription import ChannelListener
from strata.shared.serving.tasks import stop_task

logger = logging.getLogger(__name__)


def make_reasoner(cfg: OriginSettings) -> Reasoner:
    r = cfg.reasoner
    if r.url == "template":
        return TemplateReasoner()
    if not r.url.startswith(("http://", "https://")):
        raise ConfigError(f"reasoner must be 'template' or an http(s):// vLLM URL, got {r.url!r}",
                          field="origin.reasoner.url")
    from strata.origin.reasoner.vllm import VllmReasoner

    return VllmReasoner(r.url, r.model, deadline_s=r.deadline_ms / 1000, max_tokens=r.max_tokens,
                        budget=TokenBudget(r.tokens_per_minute, r.tokens_per_day), cache_ttl_s=r.cache_ttl_s)


class OriginNode:
    def __init__(self, settings: StrataSettings) -> None:
        cfg = self.cfg = settings.origin
        self.gate = gate_from_settings(settings, "the origin", cfg.store.url)
        self.auth_enabled = settings.auth.enabled
        self.catalog_tenant = settings.auth.catalog_tenant
        self.policy = settings.guardrails
        self.metrics = OriginMetrics()
        self.state: OriginState | None = None
        self._shard_dir: Path | None = None      # a private shard directory this node made (removed at stop)
        self._text_dir: Path | None = None       # the text shard's private copy (removed at stop)
        self._tower_dir: Path | None = None      # the two-tower shard's copy beside a configured one (removed at stop)
        self._opened = contextlib.ExitStack()    # what load() opened (indexes, shard directories), closed at stop
        # the catalog through the log (``catalog.broker``): the topic is the durable log and the one order every
        # replica applies; without a broker, this process's own file (``origin.catalog_log``)
        self.catalog_feed = CatalogFeed(settings.catalog, self._apply_updates, name="origin-catalog") \
            if feed_configured(settings.catalog) else None
        log_path = catalog_log_path(cfg.catalog_log, cfg.registry, cfg.model) if self.catalog_feed is None else None
        self.catalog_log = CatalogLog(log_path) if log_path is not None else None
        self._upserts = asyncio.Lock()
        # an erased user (DELETE /v1/users/{id} on the streaming service): drop its cached profile at once
        self.erasures = ChannelListener(cfg.store.url, ERASURE_CHANNEL, self._erased, field="origin.store.url") \
            if configured(cfg.store.url) else None
        self._erasure_task: asyncio.Task | None = None
        self.reasoner = make_reasoner(cfg)
        self.profiles = ProfileSource(make_profile_store(cfg.store.url, cfg.store.timeout_ms / 1000),
                                      cfg.store.timeout_ms / 1000, cfg.profile_max_stale_s)
        self._ids = (f"{os.urandom(6).hex()}{i:x}" for i in range(1, 1 << 62))
        self.redactor = shared_redactor()        # after the config is checked: it imports Presidio (~1.5 s)
        self.ann = AnnSource(cfg.retrieve, cfg.vector_index.ef, cfg.vector_index.exact)
        self.rank = Rank()
        self.two_tower = TwoTowerSource(cfg.retrieve, cfg.tower_ef or cfg.vector_index.ef, cfg.vector_index.exact)
        ranking = Ranking(ProfileStage(self.profiles), self.ann, GuardrailFilter(self.metrics.removed), self.rank,
                          MmrSelector(cfg.mmr_lambda), Select(cfg.explore_slots, seed=cfg.seed),
                          popular=PopularSource(cfg.popular), covisitation=CovisitationSource(cfg.covisitation),
                          purchased=AlreadyPurchasedFilter(cfg.filter_purchased), two_tower=self.two_tower)
        encode = Encode(lambda: next(self._ids), self._answered, signer_from_settings(settings.auth))
        self.recommend = recommend_handler(lambda: self.state, ranking, encode)
        rl = settings.rate_limit
        self.admission = ExplainAdmission(rl.max_concurrent_explains, rl.llm_tokens_per_minute,
                                          cfg.reasoner.max_tokens)
        self.explain = explain_handler(lambda: self.state, ranking,
                                       ReasonStage(self.reasoner, self.redactor, self.admission), encode)
        self.metrics.bind({"recommend": self.recommend.pipeline.timings, "explain": self.explain.pipeline.timings},
                          self._fallbacks,
                          lambda: self.rank.scored_by)

    def _fallbacks(self) -> Counter[str]:
        """Explains the template answered instead of the configured reasoner, by reason."""
        counted = getattr(self.reasoner, "fallbacks", None)      # the vLLM reasoner counts its own
        fallbacks: Counter[str] = Counter() if counted is None else counted
        return fallbacks + self.admission.refused

    def _erased(self, data: bytes) -> None:
        try:
            tenant, user_id = msgpack.unpackb(data, raw=False)
            n = self.profiles.forget_user(str(tenant), str(user_id))
        except (ValueError, TypeError) as exc:
            logger.debug("erasure message undecodable: %s", exc)
            return
        logger.info("erased user's cached profile dropped", extra={"tenant": tenant, "entries": n})

    def _answered(self, ctx: OriginCtx) -> None:
        if ctx.degraded:
            self.metrics.degraded(ctx.route_reasons)

    def load(self) -> OriginState:
        """Bundle -> catalog, ranker, pools; the vector index: the bundle's shipped shard (edge backend, no
        shard directory configured) or built from its item vectors; the two-tower and deep ranker bundles
        when the registry has them (``origin.models``)."""
        cfg = self.cfg
        bundle = load_origin_bundle(cfg.registry, cfg.model, ort_threads=cfg.ort_threads)
        location = cfg.vector_index.url
        index = None
        if cfg.vector_index.backend == "edge" and location is None:
            location = str(self._private_dir() / "items")
            index = open_item_index(Path(cfg.registry) / cfg.model / bundle.version, bundle.catalog, Path(location))
        if index is None:
            index = build_index(bundle.catalog, cfg.vector_index.backend, location)
        self._opened.callback(index.close)
        covis = load_covisitation(Path(cfg.registry) / cfg.model / bundle.version, len(bundle.catalog))
        models = load_origin_models(cfg.registry, cfg.retrieval_model, cfg.ranker_model, bundle.catalog,
                                    cfg.ort_threads)
        if models is not None:
            models.index = self._load_tower_index(models, bundle.catalog)
            if models.index is not None:
                self._opened.callback(models.index.close)
        text = self._load_text(bundle.catalog)
        if text is not None:
            self._opened.callback(text.close)
        self.state = OriginState(bundle, index, self.policy, text, covis, models)
        if self.catalog_log is not None:
            replayed = self.catalog_log.replay()
            step = cfg.upsert_chunk
            for lo in range(0, len(replayed), step):
                self.state.upsert_items(replayed[lo:lo + step])
            if replayed:
                logger.info("catalog updates replayed", extra={"updates": len(replayed),
                                                              "catalog_log": str(self.catalog_log.path)})
        if self.state.guard.unmatched_categories:
            logger.warning("banned categories match no category of the catalog: %s",
                           list(self.state.guard.unmatched_categories))
        return self.state

    def _load_tower_index(self, models: OriginModels, catalog: Catalog) -> VectorIndex | None:
        """The two-tower items' ANN index: the retrieval bundle's shipped shard (edge backend), else built
        from its vectors; None when neither works (logged: the two-tower source searches exactly)."""
        vi = self.cfg.vector_index
        try:
            if vi.backend == "edge":
                # next to a configured shard directory (like the text shard), else in the private one
                if vi.url:
                    self._tower_dir = self._removed_at_stop(_beside(Path(vi.url), "-tower"))
                shard = (self._tower_dir or self._private_dir()) / "tower"
                bdir = Path(self.cfg.registry) / self.cfg.retrieval_model / models.versions["retrieval"]
                index = open_tower_index(bdir, models, catalog, shard)
                return index if index is not None else build_tower_index(models, catalog, "edge", str(shard))
            return build_tower_index(models, catalog, vi.backend, vi.url or ":memory:")
        except StrataError as exc:
            logger.error("two-tower index not loaded; its source searches exactly: %s", exc.reason)
            return None

    def _private_dir(self) -> Path:
        if self._shard_dir is None:
            self._shard_dir = self._removed_at_stop(private_shard_dir())
        return self._shard_dir

    def _removed_at_stop(self, d: Path) -> Path:
        self._opened.callback(shutil.rmtree, d, ignore_errors=True)
        return d

    def _load_text(self, catalog) -> TextSearch | None:
        """The text search, or None (lexical content source) when there is no text-encoder bundle or it
        cannot be loaded (logged: recommendations still work, queries match words)."""
        cfg = self.cfg
        vi = cfg.vector_index
        if vi.backend == "edge":
            # next to a configured item shard directory (the demo keeps all of a run's files in one place);
            # else a private temporary directory; removed at stop either way
            self._text_dir = self._removed_at_stop(_beside(Path(vi.url), "-text") if vi.url else private_shard_dir())
        try:
            return load_text_search(cfg.registry, catalog, model=cfg.text_model, backend=vi.backend,
                                    location=vi.url if vi.backend == "qdrant" else None,
                                    shard_dir=self._text_dir / "text" if self._text_dir else None,
                                    threads=cfg.ort_threads)
        except StrataError as exc:
            logger.error("text encoder not loaded; the content source matches words: %s", exc)
            return None

    def upsert_items(self, updates: list[ItemUpdate]) -> list[int]:
        """All at once, on the calling thread (tools, tests); the route uses ``upsert``."""
        if self.state is None:
            from strata.shared.errors import NotReady

            raise NotReady("no model loaded yet", field="model")
        return self.state.upsert_items(updates)

    async def upsert(self, updates: list[ItemUpdate], tenant: str | None = None,
                     key_id: str | None = None) -> tuple[list[int], list[str]]:
        """``POST /v1/items``: logged durably first, then applied chunk by chunk: each chunk's text embedding in a
        worker thread, its catalog and index writes on the event loop, so a large upsert never holds the loop
        (health checks keep answering). The log is the catalog topic when ``catalog.broker`` names one (then
        the feed applies the records here as at every replica, in log order, and this returns once it has),
        else this process's ``catalog_log`` file. One upsert at a time. Returns (rows, the ids whose
        restriction the floor kept)."""
        state = self.state
        if state is None:
            from strata.shared.errors import NotReady

            raise NotReady("no model loaded yet", field="model")
        if self.catalog_feed is not None:
            # appended to the catalog topic; applied here (and at every replica) by the feed, in log order
            kept_flags = await self.catalog_feed.publish(updates, tenant, key_id)
            state = self.state
            assert state is not None
            rows = [state.catalog.row[u.item_id] for u in updates]
            return rows, list(dict.fromkeys(u.item_id for u, k in zip(updates, kept_flags, strict=True) if k))
        async with self._upserts:          # logged and applied in the same order
            if self.catalog_log is not None:
                await asyncio.to_thread(self.catalog_log.append, updates, tenant, key_id)
            kept_flags = await self._apply_unlocked(state, updates)
        rows = [state.catalog.row[u.item_id] for u in updates]
        return rows, list(dict.fromkeys(u.item_id for u, k in zip(updates, kept_flags, strict=True) if k))

    async def _apply_updates(self, updates: list[ItemUpdate]) -> list[bool]:
        """Apply catalog updates chunk by chunk (text embedding in a worker thread, catalog and index writes on
        the event loop), one batch at a time; per update: was its restriction kept by the floor."""
        state = self.state
        if state is None:
            from strata.shared.errors import NotReady

            raise NotReady("no model loaded yet", field="model")
        async with self._upserts:
            return await self._apply_unlocked(state, updates)

    async def _apply_unlocked(self, state: OriginState, updates: list[ItemUpdate]) -> list[bool]:
        kept: set[str] = set()
        step = self.cfg.upsert_chunk
        for lo in range(0, len(updates), step):
            chunk = updates[lo:lo + step]
            embedded = await asyncio.to_thread(state.embed, chunk)
            kept.update(state.floor(chunk))
            state.upsert_items(chunk, embedded, floored=True)
            await asyncio.sleep(0)
        return [u.item_id in kept for u in updates]

    async def start(self) -> None:
        if self.state is None:
            await asyncio.to_thread(self.load)
        if not self.auth_enabled:
            warn_auth_off("the origin")
        if self.gate is not None:
            await self.gate.start()
        if self.catalog_feed is not None:
            await self.catalog_feed.start()      # replays the catalog topic (not ready until it has)
        if self.erasures is not None:
            self._erasure_task = asyncio.create_task(self.erasures.run(), name="erasures")
        # Open the store connection now so the first request's short deadline is not spent on connect.
        if self.profiles.store.configured and not await self.profiles.store.ping():
            logger.warning("store not reachable at start; profiles fall back until it is")

    async def stop(self) -> None:
        """Close the clients, then what ``load`` opened in reverse order (an index before its directory),
        each whatever the ones before it raised."""
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(self._opened.pop_all())
            stack.callback(self._forget_dirs)
            stack.push_async_callback(self.profiles.store.close)
            stack.push_async_callback(self.reasoner.close)
            stack.push_async_callback(self._stop_background)      # first: the listener and the limit sync

    async def _stop_background(self) -> None:
        await stop_task(self._erasure_task)
        self._erasure_task = None
        if self.gate is not None:
            await self.gate.stop()
        if self.catalog_feed is not None:
            await self.catalog_feed.stop()

    def _forget_dirs(self) -> None:
        self._shard_dir = self._text_dir = self._tower_dir = None

    def readiness(self) -> tuple[int, dict]:
        if self.state is None:
            return 503, {"ready": False, "reason": "no model loaded"}
        feed = self.catalog_feed
        if feed is not None and not feed.replayed:
            return 503, {"ready": False, "reason": "catalog topic not replayed yet", "catalog": feed.status()}
        return 200, {"ready": True, "model_version": self.state.version, "items": len(self.state.catalog),
                     "reasoner": self.reasoner.name,
                     "text_encoder": self.state.text.version if self.state.text is not None else None,
                     "models": self.state.models.versions if self.state.models is not None else None,
                     "store": "redis" if self.profiles.store.configured else "none",
                     "catalog": feed.status() if feed is not None else None}

    def exposition(self) -> bytes:
        out = self.metrics.exposition()
        if self.catalog_feed is not None:
            out += self.catalog_feed.exposition("strata_origin")
        return out + self.gate.exposition() if self.gate is not None else out


def _beside(path: Path, suffix: str) -> Path:
    """A fresh directory named ``path`` + ``suffix`` (a leftover of an earlier run is replaced)."""
    d = path.with_name(path.name + suffix)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d
