"""Run the edge node: uvicorn (uvloop + httptools), one process per core, no access log on the hot path."""

from __future__ import annotations

import logging

import uvicorn

from edge.app import build_app
from edge.service import EdgeService
from shared.config import StrataSettings
from shared.logs import configure_logging

logger = logging.getLogger(__name__)


def run_edge(settings: StrataSettings) -> None:
    configure_logging(settings.log_level)
    cfg = settings.edge
    svc = EdgeService(cfg)
    svc.load_model()    # fail fast on a bad registry, before binding the port
    logger.info("edge serving", extra={"host": cfg.host, "port": cfg.port, "model_version": svc.ranker.version,
                                       "store": cfg.store.url})
    uvicorn.run(build_app(svc), host=cfg.host, port=cfg.port, loop="uvloop", http="httptools",
                access_log=False, log_level=settings.log_level.lower(), lifespan="on",
                timeout_keep_alive=30, server_header=False, date_header=False)
