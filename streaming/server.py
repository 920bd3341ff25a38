"""Entry points of tier 2: the ingest API and the tier-2 scorer under uvicorn, and the stream processor with
its /metrics, /healthz and /readyz (``--metrics-port``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from prometheus_client import CollectorRegistry

from strata.shared.auth.gate import gate_from_settings
from strata.shared.auth.impressions import signer_from_settings
from strata.shared.config import StrataSettings
from strata.shared.errors import ConfigError
from strata.shared.serving.gc_tuning import tune_gc
from strata.shared.serving.listen import (
    bind_error,
    held_until_served,
    is_bind_error,
    listen_socket,
    run_uvicorn,
)
from strata.streaming.app import build_app
from strata.streaming.catalog import load_catalog
from strata.streaming.processor import StreamProcessor
from strata.streaming.processor_metrics import ProcessorMetrics
from strata.streaming.processor_ops import serve_ops
from strata.streaming.service import IngestService

logger = logging.getLogger(__name__)


def _no_store(who: str) -> ConfigError:
    return ConfigError(f"streaming.store is 'none' but {who}; give redis://host:port/db", field="streaming.store")


def run_ingest(settings: StrataSettings) -> None:
    """Bind the port (a busy port or bad host: ``ConfigError`` before anything loads), load tier 2 (a bad
    registry: its error, before anything listens), then serve until SIGINT/SIGTERM. Without a store
    (``streaming.store: none``) only the ingest API runs, so tier 2 must be off."""
    cfg = settings.streaming
    gate = gate_from_settings(settings, "the streaming service", cfg.store)    # a bad auth config: before all
    if cfg.store == "none" and cfg.tier2.enabled:
        raise _no_store("the tier-2 scorer reads sessions and counts from it (or set "
                             "streaming.tier2.enabled false: the ingest API alone needs no store)")
    with held_until_served(listen_socket(cfg.host, cfg.port, section="streaming")) as sock:
        tier2 = None
        if cfg.tier2.enabled:
            from strata.streaming.tier2.service import Tier2Service

            tier2 = Tier2Service(settings)
            tier2.load()
    port = sock.getsockname()[1]
    logger.info("streaming service serving", extra={"host": cfg.host, "port": port, "broker": cfg.broker,
                                                    "tier2": tier2 is not None})
    tune_gc()
    run_uvicorn(build_app(IngestService(cfg), tier2, gate), sock, host=cfg.host, port=port, loop="uvloop",
                http="httptools", access_log=False, log_level=settings.log_level.lower(), lifespan="on",
                server_header=False)


def run_processor(settings: StrataSettings, metrics_port: int | None) -> None:
    cfg = settings.streaming
    if cfg.store == "none":
        raise _no_store("the stream processor writes session vectors, profiles and counts to it")
    metrics = ProcessorMetrics()
    proc_box: list[StreamProcessor] = []
    if metrics_port is not None:             # a busy port: one line before anything loads
        reg = CollectorRegistry(auto_describe=False)
        reg.register(metrics.instruments)
        try:
            serve_ops(cfg.host, metrics_port, reg,
                      lambda: proc_box[0].readiness() if proc_box else (503, {"ready": False, "reason": "starting"}))
        except OSError as exc:
            if not is_bind_error(exc):
                raise
            raise bind_error(cfg.host, metrics_port, exc, section="streaming", port_key="--metrics-port") from None
    catalog = load_catalog(cfg.registry, cfg.model)      # fail fast on a bad registry

    signer = None
    if settings.auth.enabled:
        signer = signer_from_settings(settings.auth)
        if signer is None:
            raise ConfigError("auth is enabled: set the impression signing secret in the environment "
                              "(STRATA_AUTH__IMPRESSION_SECRET)", field="auth.impression_secret")
    else:
        logger.warning("auth.enabled is false: impressions and clicks are counted without checking their "
                       "signed impression ids (see docs/security.md)")

    async def main() -> None:
        proc = StreamProcessor(cfg, catalog, metrics, signer)
        proc_box.append(proc)
        tune_gc()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, proc.stop)
        try:
            await proc.start()
            logger.info("stream processor running", extra={"broker": cfg.broker, "group": cfg.group,
                                                           "store": cfg.store, "model_version": catalog.version})
            await proc.run()
        finally:
            await proc.close()

    import uvloop

    uvloop.run(main())
