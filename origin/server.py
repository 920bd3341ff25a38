"""Run an origin node under uvicorn (uvloop, httptools), no access log."""

from __future__ import annotations

import logging

import uvicorn

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import StrataSettings
from strata.shared.serving.logs import configure_logging

logger = logging.getLogger(__name__)


def run_origin(settings: StrataSettings) -> None:
    configure_logging(settings.log_level)
    cfg = settings.origin
    node = OriginNode(settings)
    node.load()          # fail fast on a bad registry, before binding the port
    logger.info("origin serving", extra={"host": cfg.host, "port": cfg.port, "model_version": node.state.version,
                                         "store": cfg.store.url, "reasoner": node.reasoner.name,
                                         "vector_index": cfg.vector_index.backend,
                                         "guardrails": settings.guardrails.model_dump(mode="json")})
    uvicorn.run(build_app(node), host=cfg.host, port=cfg.port, loop="uvloop", http="httptools", access_log=False,
                log_level=settings.log_level.lower(), lifespan="on", server_header=False)
