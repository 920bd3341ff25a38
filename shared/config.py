"""Service configuration: defaults < YAML file < ``STRATA_*`` environment (nested with ``__``) < flags.

One validated model per concept, defined once: the bandit's and the confidence model's settings are
the value objects ``shared.ranking.bandit`` and ``shared.ranking.confidence`` compute with; the guardrails section is
``shared.ranking.guardrails.Guardrails``. Unknown keys are refused with a message naming the key. Secrets
only from the environment. Example: ``STRATA_EDGE__BANDIT__N0=50``; the YAML path comes from
``--config`` or ``STRATA_CONFIG``. Loading never writes the environment.

``SettingsSource`` remembers how a process built its settings so they can be built again: the
guardrails section is re-read from the YAML file while the process runs (no restart).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from strata.shared.errors import ConfigError
from strata.shared.ranking.bandit import BanditConfig
from strata.shared.ranking.confidence import ConfidenceConfig
from strata.shared.ranking.guardrails import Guardrails
from strata.shared.ranking.session_update import SessionRule

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    response_size: int = Field(50_000, ge=0, description="response cache entries (0 turns it off)")
    response_ttl_s: float = Field(2.0, gt=0, description="seconds a cached answer is served")
    exact_size: int = Field(20_000, ge=0, description="byte-identical request bodies answered without parsing")
    hour_bucket: int = Field(6, ge=1, le=24, description="hours per context bucket in the cache key")
    session_size: int = Field(100_000, ge=1, description="session vectors kept in the PoP cache")
    session_ttl_s: float = Field(5.0, gt=0, description="fresh for this long, then served stale while refreshed")
    session_max_stale_s: float = Field(300.0, gt=0, description="never serve a cached session older than this")


class StoreSettings(_Section):
    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// URL, or 'none' to run on priors only")
    timeout_ms: float = Field(3.0, gt=0, description="budget for a store read on the request path")
    bandit_refresh_s: float = Field(1.0, gt=0, description="re-read the bandit counts of every tracked slot this "
                                    "often (one pipelined round trip)")
    retry_after_s: float = Field(1.0, gt=0, description="while the store is down, probe it this often")
    probe_timeout_ms: float = Field(250.0, gt=0, description="a probe (PING) slower than this counts as down")
    warm_connections: int = Field(16, ge=1, le=1024, description="store connections opened at start")


def _pinned_slots() -> dict[str, tuple[str, ...]]:
    return {"default": ("home",)}


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class EdgeBandit(BanditConfig):
    """The bandit's settings plus which slots' counts the edge keeps fresh."""

    slots: dict[str, tuple[str, ...]] = Field(
        default_factory=_pinned_slots,
        description="tenant -> slots whose counts are always refreshed (never evicted)")
    recent_slots: int = Field(default=256, ge=0, description="other recently requested slots kept (LRU)")


class ImpressionSettings(_Section):
    """The edge's impression log: every answer served becomes an ``impression`` event on the log."""

    broker: str = Field("none", description="Kafka bootstrap servers HOST:PORT[,...], or 'none' (no logging); "
                                            "flag --broker, env STRATA_BROKER")
    topic: str = Field("events", description="the events topic the stream processor reads")
    buffer: int = Field(10_000, ge=1, description="impressions waiting to be sent; past it new ones are dropped "
                                                  "(counted), the answer is served regardless")
    batch: int = Field(500, ge=1, description="impressions per send")
    linger_ms: float = Field(50.0, ge=1, description="the sender wakes up this often")
    timeout_s: float = Field(2.0, gt=0, description="a send not acknowledged by then counts as dropped")


class _HttpServer(_Section):
    """The HTTP server limits every tier shares (``shared.serving.http``)."""

    http: Literal["strata", "uvicorn"] = Field(
        "strata", description="HTTP server: Strata's own (header and body deadlines, raw-byte limits, a connection "
                              "cap, fairness; the edge answers its hot route inline) or uvicorn (none of those)")
    idle_timeout_s: float = Field(30.0, gt=0, description="close keep-alive connections idle this long")
    header_timeout_s: float = Field(10.0, gt=0, description="request line and headers must arrive within this "
                                    "(from the request's first byte), else 408 and close")
    body_timeout_s: float = Field(10.0, gt=0, description="the body must arrive within this after the headers, "
                                  "else 408 and close")
    max_connections: int = Field(10_000, ge=1, description="open connections; past it a new one gets 503 and "
                                 "is closed (lowered to the process's file limit)")


class EdgeSettings(_HttpServer):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port")
    registry: str = Field("registry", description="model registry directory (relative to the working directory)")
    model: str = Field("edge-scorer", description="registry model the edge serves")
    reload_poll_s: float = Field(2.0, gt=0, description="poll CURRENT and the config file this often")
    max_body_bytes: int = Field(65_536, ge=1024, description="largest request body (413 past it)")
    pool_size: int = Field(200, ge=1, le=1000, description="candidates from the cached pool when none are given")
    ort_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads")
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    bandit: EdgeBandit = EdgeBandit()
    confidence: ConfidenceConfig = ConfidenceConfig()
    impressions: ImpressionSettings = ImpressionSettings()


class TopicSettings(_Section):
    events: str = Field("events", description="events topic (keyed by tenant + session)")
    dead_letter: str = Field("events.dlq", description="rejected raw events with their reason")
    triggers: str = Field("triggers", description="post_purchase and abandoned_cart triggers")
    partitions: int = Field(4, ge=1, le=256, description="partitions of the events topic (created at start)")


class VectorIndexSettings(_Section):
    backend: Literal["edge", "qdrant"] = Field("edge", description="Qdrant Edge in-process, or a Qdrant server")
    url: str | None = Field(None, description="qdrant: server URL or a local-mode path (default: in memory); edge: "
                                              "shard directory (default: a private temporary directory)")
    ef: int | None = Field(None, ge=1, description="HNSW beam width; None: the engine's default")
    exact: bool = Field(False, description="brute-force search (exact recall)")


class Tier2Settings(_Section):
    """The tier-2 scorer on the streaming service (``POST /v1/recommend``, ``tier="streaming"``)."""

    enabled: bool = Field(True, description="serve POST /v1/recommend next to the ingest API")
    retrieve: int = Field(200, ge=10, le=1000, description="ANN candidates per request when none are given")
    store_timeout_ms: float = Field(50.0, gt=0, description="budget of each store read (session vector, counts)")
    ort_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads")
    log_impressions: bool = Field(True, description="an impression event per answer on the events topic "
                                                    "(streaming.broker), like the edge's")
    bandit: BanditConfig = BanditConfig()
    confidence: ConfidenceConfig = ConfidenceConfig()
    vector_index: VectorIndexSettings = VectorIndexSettings()


class StreamingSettings(_HttpServer):
    """Tier 2: the ingest API (``strata streaming serve``) and the stream processor (``... process``)."""

    host: str = Field("127.0.0.1", description="bind address of the ingest API and tier-2 scorer")
    port: int = Field(8090, ge=0, le=65535, description="HTTP port of the ingest API and tier-2 scorer")
    broker: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers host:port[,host:port]")
    store: str = Field("redis://127.0.0.1:6379/0", description="redis:// URL of the online store, or 'none' (the "
                                                            "ingest API alone, tier 2 off; the processor needs one)")
    registry: str = Field("registry", description="model registry directory")
    model: str = Field("edge-scorer", description="registry model whose item vectors the processor and tier 2 use")
    group: str = Field("strata-processor", description="consumer group of the stream processor")
    topics: TopicSettings = TopicSettings()
    max_events: int = Field(1000, ge=1, le=10_000, description="events per POST /v1/events")
    max_body_bytes: int = Field(4 << 20, ge=1024, description="largest POST /v1/events body (413 past it)")
    max_event_bytes: int = Field(128 << 10, ge=1024, description="one event's encoded size; a larger one is "
                                 "rejected at its index without being decoded")
    ts_skew_s: float = Field(300.0, ge=0, description="an event's ts may be at most this far ahead of its "
                             "receive time (ingest clock; the log timestamp for the processor)")
    ts_horizon_s: float = Field(7 * 86400.0, gt=0, description="an event's ts may be at most this far behind its "
                                "receive time")
    produce_timeout_s: float = Field(3.0, gt=0, description="ingest answers 503 when the log has not acked by then")
    linger_ms: int = Field(2, ge=0, le=1000, description="producer linger before a batch is sent")
    fetch_max_wait_ms: int = Field(20, ge=0, le=5000, description="consumer long-poll wait (freshness!)")
    max_batch: int = Field(2000, ge=1, description="events per processor batch (one store round trip)")
    click_join_window_s: float = Field(3600.0, gt=0, description="a click joins its impression within this")
    abandoned_cart_s: float = Field(1800.0, gt=0, description="add_to_cart without purchase this long -> trigger")
    wait_replicas: int = Field(0, ge=0, le=16, description="replicas that must acknowledge a batch's store writes "
                               "(WAIT) before its offsets are committed; fewer in time: the batch is redone. 0: no WAIT")
    wait_timeout_ms: int = Field(1000, gt=0, description="how long the processor's WAIT for wait_replicas waits")
    dedup_ttl_s: float = Field(3600.0, ge=60, description="event ids are remembered at least this long (at most "
                               "2x): a client retry of an event id within it is not applied twice; memory is "
                               "~70 B per id (docs/operations.md)")
    profile_ttl_s: float = Field(90 * 86400.0, gt=0, description="a profile (and its purchase history) expires "
                                 "this long after its last event's day")
    profile_half_life_days: float = Field(30.0, gt=0, description="category/brand affinities halve over this "
                                          "many days (decayed once a day per profile)")
    profile_max_affinities: int = Field(64, ge=1, le=10_000, description="cat:/brand: fields kept per profile "
                                        "and map, strongest (decayed) first")
    profile_keep_days: int = Field(31, ge=1, le=3650, description="per-day view/purchase counters kept")
    bandit_ttl_s: float = Field(30 * 86400.0, gt=0, description="a slot's bandit counts expire this long after "
                                "its last impression or click")
    bandit_max_items: int = Field(20_000, ge=10, description="items counted per slot; past 1.1x this the least "
                                  "shown are dropped")
    bandit_position_weights: list[float] | None = Field(
        None, description="P(a shopper looks at position i), i = 1, 2, ...: an impression adds the scorer's p times "
                          "this to an item's expected clicks (the last weight holds past the list); null: "
                          "1/log2(i + 1), the DCG discount; [1.0]: no position bias")
    log_reset_alert_s: float = Field(3600.0, gt=0, description="/readyz reports a detected log reset "
                                     "(degraded) for this long")
    replay_buffer_bytes: int = Field(64 << 20, ge=0, description="the ingest keeps acknowledged events up to this "
                                     "many bytes until the processor applied them, to append them again if the "
                                     "log is reset")
    session_ttl_s: float = Field(86400.0, gt=0, description="session state expires at least this long (at most 1.1x) after its last write")
    session: SessionRule = SessionRule()
    tier2: Tier2Settings = Tier2Settings()
    erasure_grace_s: float = Field(2.0, ge=0, description="DELETE /v1/users/{id} erases again after this long (a "
                                   "processor batch planned before the tombstone may write meanwhile)")
    tombstone_ttl_s: float = Field(30 * 86400.0, gt=0, description="an erased user's events older than the "
                                   "erasure are dropped for this long (keep it above the log's retention)")

    @field_validator("bandit_position_weights")
    @classmethod
    def _position_weights(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v:
                raise ValueError("bandit_position_weights must name at least one weight (or be null)")
            for i, w in enumerate(v):
                if not 0 < w <= 1:
                    raise ValueError(f"bandit_position_weights[{i}] must be in (0, 1]: {w} is not")
        return v

    def position_weights(self, n: int) -> list[float]:
        """The examination weight of positions 1..n (``bandit_position_weights``)."""
        v = self.bandit_position_weights
        if v is None:
            return [1.0 / math.log2(i + 2) for i in range(n)]
        return [v[min(i, len(v) - 1)] for i in range(n)]

    @field_validator("store")
    @classmethod
    def _store_url(cls, url: str) -> str:
        if url.strip().lower() in ("", "none"):
            return "none"
        if not url.startswith(("redis://", "rediss://", "unix://", "valkey://", "redis+cluster://",
                                "rediss+cluster://", "valkey+cluster://")):
            raise ValueError("store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, "
                             f"valkey+cluster:// or 'none', got {url!r}")
        return url


class ReasonerSettings(_Section):
    url: str = Field("template", description="'template', or the base URL of a vLLM OpenAI-compatible server")
    model: str = Field("strata-explainer", description="served model name on the vLLM server")
    deadline_ms: float = Field(200.0, gt=0, description="an LLM answer later than this is dropped (template answers)")
    max_tokens: int = Field(256, ge=16, description="completion tokens per request")
    tokens_per_minute: int = Field(60_000, ge=0, description="LLM spend cap per minute; over it the template "
                                                           "answers")
    tokens_per_day: int = Field(5_000_000, ge=0, description="LLM spend cap per day; over it the template answers")
    cache_ttl_s: float = Field(300.0, ge=0, description="accepted LLM answers are reused this long")


class OriginSettings(_HttpServer):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8091, ge=0, le=65535, description="HTTP port")
    registry: str = Field("registry", description="model registry directory")
    model: str = Field("edge-scorer", description="registry model of the catalog, pools and edge scorer")
    text_model: str = Field("text-encoder", description="registry model of the text encoder (MiniLM); without "
                                                         "its bundle the content source matches words")
    retrieval_model: str = Field("retrieval", description="registry model of the two-tower retrieval bundle; "
                                                           "without it (or the ranker) the edge scorer ranks")
    ranker_model: str = Field("ranker", description="registry model of the deep ranker bundle")
    ort_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads")
    max_body_bytes: int = Field(65_536, ge=1024, description="largest request body (413 past it)")
    store: StoreSettings = StoreSettings(url="none", timeout_ms=20.0)
    profile_max_stale_s: float = Field(3600.0, gt=0, description="a cached profile older than this is not served")
    retrieve: int = Field(500, ge=10, le=2000, description="ANN candidates per request")
    tower_ef: int | None = Field(3000, ge=1, description="HNSW beam width of the two-tower search (its vectors "
                                                         "cluster tightly; None: vector_index.ef)")
    popular: int = Field(200, ge=10, le=2000, description="popular candidates per request")
    covisitation: int = Field(100, ge=0, le=2000, description="co-visited candidates per request (0: off)")
    filter_purchased: bool = Field(False, description="remove items the user already bought "
                                                      "(reason already_purchased; needs consent and a store)")
    mmr_lambda: float = Field(0.7, ge=0, le=1, description="1: pure score order; lower: more diverse")
    explore_slots: int = Field(1, ge=0, le=10, description="explored slots per answer (at most k/5)")
    seed: int = Field(0, description="seed of the exploration draws")
    vector_index: VectorIndexSettings = VectorIndexSettings()
    reasoner: ReasonerSettings = ReasonerSettings()
    catalog_log: str | None = Field(None, description="POST /v1/items updates are appended here and replayed at "
                                    "start; null: catalog-updates.jsonl in <registry>/<model>/; 'none': not kept")
    upsert_chunk: int = Field(64, ge=1, le=1000, description="items embedded per worker-thread step of an upsert")


class RouterDeadlines(_Section):
    """How long the edge waits for an upper tier before answering itself (``degraded``)."""

    streaming: float = Field(15.0, gt=0, description="ms for tier 2's answer")
    origin: float = Field(60.0, gt=0, description="ms for the origin's answer")
    explain: float = Field(300.0, gt=0, description="ms for the origin's answer to an explain=true request")


class BreakerSettings(_Section):
    """One circuit breaker per upstream endpoint: open after ``failures`` consecutive failures or timeouts,
    a half-open probe after ``open_s``, closed again by a success."""

    failures: int = Field(5, ge=1, description="consecutive failures/timeouts that open the breaker")
    open_s: float = Field(2.0, gt=0, description="seconds open before one half-open probe is let through")


class RouterSettings(_Section):
    """The edge's router: requests whose ``route_tier`` is not ``edge`` go to that tier (same
    ``/v1/recommend`` contract, msgpack between tiers). An empty URL list: that tier is not escalated to."""

    streaming_urls: list[str] = Field(default_factory=list, description="tier-2 base URLs (several regional "
                                      "endpoints: power-of-two-choices on latency EWMA and outstanding requests)")
    origin_urls: list[str] = Field(default_factory=list, description="origin base URLs")
    deadline_ms: RouterDeadlines = RouterDeadlines()
    mode: Literal["sync", "background"] = Field(
        "sync", description="sync: wait for the upper tier within the deadline; background: answer at once and "
                            "fetch the upper tier's answer for the session's next request (explain is always sync)")
    max_escalation_share: float = Field(0.35, ge=0, le=1, description="admission control: beyond this share of "
                                        "requests the edge answers itself (reason escalation_budget)")
    breaker: BreakerSettings = BreakerSettings()
    answer_ttl_s: float = Field(10.0, gt=0, description="an upper tier's answer is served again to the same "
                                "session's same request for this long, unless the session changes first")

    @field_validator("streaming_urls", "origin_urls")
    @classmethod
    def _http_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"must be http:// or https:// URLs, got {url!r}")
        return [u.rstrip("/") for u in v]


class AuthSettings(_Section):
    """Who may call the tiers (``shared.auth``): API keys per tenant with scopes, sent as
    ``Authorization: Bearer``. Off by default (every route open, one WARNING at start)."""

    enabled: bool = Field(False, description="require a key on every route but /healthz, /readyz, /metrics; "
                                             "the tenant comes from the key (env STRATA_AUTH__ENABLED)")
    keys_file: str = Field("strata-keys.json", description="hashed keys written by 'strata keys create' "
                                                            "(env STRATA_AUTH__KEYS_FILE); re-read when it changes")
    reload_s: float = Field(2.0, gt=0, description="check the keys file for changes this often")
    impression_secret: SecretStr | None = Field(
        None, description="MAC key impression ids are signed with (env STRATA_AUTH__IMPRESSION_SECRET only; "
                          "the same value at every tier and in the processor; required when auth is enabled)")
    catalog_tenant: str = Field("default", description="the tenant whose keys may change the catalog "
                                                       "(POST /v1/items with scope catalog:write)")


class RateLimitSettings(_Section):
    """Token buckets per key and per client address (``shared.auth.limits``); 0 turns a limit off."""

    per_key_rps: float = Field(0.0, ge=0, description="requests per second per API key (0: off)")
    per_ip_rps: float = Field(0.0, ge=0, description="requests per second per client address (0: off)")
    burst: float = Field(0.0, ge=0, description="bucket size in requests (0: one second of the rate)")
    sync_ms: float = Field(200.0, gt=0, description="regional tiers share their buckets through the store "
                                                    "this often")
    llm_tokens_per_minute: int = Field(0, ge=0, description="LLM tokens per tenant per minute at the origin "
                                                             "(0: only the global reasoner budget)")
    max_concurrent_explains: int = Field(16, ge=1, description="explains in flight at the origin; beyond it "
                                                               "the template answers at once")


class CatalogSettings(_Section):
    """The catalog through the log (``shared.catalog_feed``): ``POST /v1/items`` appends one record per item to a
    compacted topic; every origin and edge applies the topic in log order (replayed from its start at launch)."""

    broker: str = Field("none", description="Kafka bootstrap servers HOST:PORT[,...] of the catalog topic (env "
                                            "STRATA_CATALOG__BROKER), or 'none': catalog updates stay in the origin "
                                            "process that took them (origin.catalog_log) and edges keep the bundle's")
    topic: str = Field("catalog", description="the compacted catalog topic (keyed by item id; created at start)")
    timeout_s: float = Field(5.0, gt=0, description="POST /v1/items waits this long for the log's acknowledgement "
                                                    "and this replica's apply (503 past it; the log keeps what it "
                                                    "acknowledged)")
    poll_ms: int = Field(20, ge=1, le=1000, description="how long one read of the topic waits for new records")


class StrataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRATA_", env_nested_delimiter="__", extra="forbid")

    log_level: LogLevel = Field("INFO", description="log level of every process (flag --log-level)")
    guardrails: Guardrails = Guardrails()
    edge: EdgeSettings = EdgeSettings()
    streaming: StreamingSettings = StreamingSettings()
    origin: OriginSettings = OriginSettings()
    router: RouterSettings = RouterSettings()
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    catalog: CatalogSettings = CatalogSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)


@functools.lru_cache(maxsize=8)
def _settings_from(path: str) -> type[StrataSettings]:
    """A settings class reading ``path`` as its YAML layer (the path lives in the class, not in os.environ)."""
    return type("StrataSettings", (StrataSettings,),
                {"model_config": SettingsConfigDict(**{**StrataSettings.model_config, "yaml_file": path})})


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The YAML file to read: ``--config`` if given, else ``STRATA_CONFIG``, else none."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("STRATA_CONFIG")
    return Path(env) if env else None


def load_settings(config_path_: str | Path | None = None, **overrides: Any) -> StrataSettings:
    """Build settings; ``overrides`` (e.g. from CLI flags) win over env and YAML."""
    path = config_path(config_path_)
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}", field="config")
    cls = _settings_from(str(path)) if path is not None else StrataSettings
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{_message(first)} (config key '{key}')", field=key) from None
    except (yaml.YAMLError, TypeError, ValueError) as exc:   # unparsable YAML or a non-mapping document
        raise ConfigError(f"cannot read {path or 'config'}: {type(exc).__name__}: {exc}", field="config") from None


def _message(err: ErrorDetails) -> str:
    """pydantic's message, worded the same for model and dataclass sections."""
    if err["type"] == "unexpected_keyword_argument":
        return "Extra inputs are not permitted"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


class SettingsSource:
    """How a process built its settings (YAML path + flag overrides), to build them again on change."""

    def __init__(self, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> None:
        self.path = config_path(path)
        self.overrides = dict(overrides or {})

    def load(self) -> StrataSettings:
        return load_settings(self.path, **self.overrides)

    def stamp(self) -> tuple[int, int] | None:
        """(mtime_ns, size) of the YAML file, None when there is none (or it vanished)."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size
