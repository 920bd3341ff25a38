"""Service configuration: defaults < YAML file < ``STRATA_*`` environment (nested with ``__``).

Unknown keys are refused at start with a message naming the key. Secrets only from the environment.
Example: ``STRATA_EDGE__BANDIT__N0=50``; YAML path from ``--config`` or ``STRATA_CONFIG``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from shared.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    response_size: int = Field(50_000, ge=0, description="response cache entries (0 turns it off)")
    response_ttl_s: float = Field(2.0, gt=0)
    exact_size: int = Field(20_000, ge=0, description="byte-identical request bodies answered without parsing")
    hour_bucket: int = Field(6, ge=1, le=24, description="hours per context bucket in the cache key")
    session_size: int = Field(100_000, ge=1)
    session_ttl_s: float = Field(5.0, gt=0, description="fresh for this long, then served stale while refreshed")
    session_max_stale_s: float = Field(300.0, gt=0)


class StoreSettings(_Section):
    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// URL, or 'none' to run on priors only")
    timeout_ms: float = Field(3.0, gt=0, description="budget for a store read on the request path")
    bandit_refresh_s: float = Field(1.0, gt=0)
    retry_after_s: float = Field(1.0, gt=0, description="after a store error, skip the store this long")


class BanditSettings(_Section):
    n0: float = Field(50.0, gt=0, description="prior strength in pseudo-impressions")
    explore_budget: float = Field(0.2, ge=0, le=1, description="max share of the k positions explored")
    cold_prior: float = Field(0.02, gt=0, lt=1, description="click prior for items unknown to the bundle")
    seed: int | None = None


class ConfidenceSettings(_Section):
    w_session: float = Field(0.25, ge=0)
    w_concentration: float = Field(0.25, ge=0)
    w_margin: float = Field(0.2, ge=0)
    w_known: float = Field(0.3, ge=0)

    @model_validator(mode="after")
    def _weights_positive(self) -> ConfidenceSettings:
        if self.w_session + self.w_concentration + self.w_margin + self.w_known <= 0:
            raise ValueError("confidence weights must not all be zero")
        return self

    concentration_scale: float = Field(100.0, gt=0)
    margin_scale: float = Field(0.02, gt=0)
    fresh_seconds: float = Field(1800.0, gt=0)
    t_edge: float = Field(0.6, ge=0, le=1)


class EdgeSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    registry: str = "registry"
    model: str = "edge-scorer"
    reload_poll_s: float = Field(2.0, gt=0)
    max_body_bytes: int = Field(65_536, ge=1024)
    pool_size: int = Field(200, ge=1, le=1000, description="candidates from the cached pool when none are given")
    ort_threads: int = Field(1, ge=1)
    http: Literal["strata", "uvicorn"] = Field(
        "strata", description="HTTP server: the edge's own (hot route answered inline) or uvicorn")
    idle_timeout_s: float = Field(30.0, gt=0, description="close keep-alive connections idle this long")
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    bandit: BanditSettings = BanditSettings()
    confidence: ConfidenceSettings = ConfidenceSettings()


class StrataSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRATA_", env_nested_delimiter="__", extra="forbid")

    log_level: str = "INFO"
    edge: EdgeSettings = EdgeSettings()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("STRATA_CONFIG")
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> StrataSettings:
    """Build settings; ``overrides`` (e.g. from CLI flags) win over env and YAML."""
    if config_path is not None:
        if not Path(config_path).is_file():
            raise ConfigError(f"config file not found: {config_path}", field="config")
        os.environ["STRATA_CONFIG"] = str(config_path)
    try:
        return StrataSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{first['msg']} (config key '{key}')", field=key) from None
    except (yaml.YAMLError, TypeError, ValueError) as exc:   # unparsable YAML or a non-mapping document
        where = os.environ.get("STRATA_CONFIG", "config")
        raise ConfigError(f"cannot read {where}: {type(exc).__name__}: {exc}", field="config") from None
