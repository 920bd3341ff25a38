"""Run an origin node under uvicorn (uvloop, httptools), no access log."""

from __future__ import annotations

import logging

from strata.origin.app import build_app
from strata.origin.node import OriginNode
from strata.shared.config import StrataSettings
from strata.shared.serving.listen import held_until_served, listen_socket, run_uvicorn
from strata.shared.serving.logs import configure_logging

logger = logging.getLogger(__name__)


def run_origin(settings: StrataSettings) -> None:
    """Bind the port (a busy port or bad host: ``ConfigError`` before anything loads), load the node (a bad
    registry: its error, before anything listens), then serve until SIGINT/SIGTERM."""
    configure_logging(settings.log_level)
    cfg = settings.origin
    with held_until_served(listen_socket(cfg.host, cfg.port, section="origin")) as sock:
        node = OriginNode(settings)
        node.load()
    port = sock.getsockname()[1]
    logger.info("origin serving", extra={"host": cfg.host, "port": port, "model_version": node.state.version,
                                         "store": cfg.store.url, "reasoner": node.reasoner.name,
                                         "vector_index": cfg.vector_index.backend,
                                         "guardrails": settings.guardrails.model_dump(mode="json")})
    run_uvicorn(build_app(node), sock, host=cfg.host, port=port, loop="uvloop", http="httptools",
                access_log=False, log_level=settings.log_level.lower(), lifespan="on", server_header=False)
