"""Run the edge node: one process per core on uvloop, no access log on the hot path.

``edge.http = "strata"`` (default): the edge's own HTTP/1.1 server (``shared.serving.http``), which answers
the hot route inline in the protocol; ``"uvicorn"``: the same ASGI app under uvicorn (httptools).
"""

from __future__ import annotations

import logging

import uvicorn

from strata.edge.node import EdgeNode
from strata.shared.config import SettingsSource, StrataSettings
from strata.shared.ranking.bandit import SAMPLER
from strata.shared.ranking.guardrails import WALK
from strata.shared.ranking.row_map import COMPILED as ROWMAP_COMPILED
from strata.shared.serving.gc_tuning import tune_gc
from strata.shared.serving.logs import configure_logging

logger = logging.getLogger(__name__)


def run_edge(settings: StrataSettings, source: SettingsSource | None = None) -> None:
    """Serve until SIGINT/SIGTERM. ``source`` says how to re-read the config (guardrail policy reload)."""
    configure_logging(settings.log_level)
    cfg = settings.edge
    node = EdgeNode(settings, source)
    node.load_model()    # fail fast on a bad registry, before binding the port
    tune_gc()
    logger.info("edge serving", extra={"host": cfg.host, "port": cfg.port, "model_version": node.slot.version,
                                       "store": cfg.store.url, "http": cfg.http, "sampler": SAMPLER,
                                       "rowmap": "compiled" if ROWMAP_COMPILED else "numpy", "walk": WALK,
                                       "guardrails": settings.guardrails.model_dump(mode="json")})
    if cfg.http == "uvicorn":
        uvicorn.run(node.asgi_app(), host=cfg.host, port=cfg.port, loop="uvloop", http="httptools",
                    access_log=False, log_level=settings.log_level.lower(), lifespan="on", proxy_headers=False,
                    timeout_keep_alive=int(cfg.idle_timeout_s), server_header=False, date_header=True,
                    limit_concurrency=cfg.max_connections, timeout_graceful_shutdown=5, ws="none")
        return
    import uvloop

    from strata.shared.serving.http.server import serve

    uvloop.run(serve(node, cfg.host, cfg.port))
