"""Run an origin node on uvloop, no access log: through Strata's own HTTP server (``origin.http: strata``, the
default: the edge's header and body deadlines, raw-byte limits, connection cap and fairness) or uvicorn."""

from __future__ import annotations

import logging

from strata.origin.app import ORIGIN_PATHS, build_app
from strata.origin.node import OriginNode
from strata.shared.config import StrataSettings
from strata.shared.serving.http.server import bind_http_gauges, run_asgi
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
        state = node.load()
    port = sock.getsockname()[1]
    logger.info("origin serving", extra={"host": cfg.host, "port": port, "model_version": state.version,
                                         "store": cfg.store.url, "reasoner": node.reasoner.name,
                                         "vector_index": cfg.vector_index.backend,
                                         "guardrails": settings.guardrails.model_dump(mode="json")})
    app = build_app(node)
    if cfg.http == "uvicorn":
        run_uvicorn(app, sock, host=cfg.host, port=port, loop="uvloop", http="httptools",
                    access_log=False, log_level=settings.log_level.lower(), lifespan="on", server_header=False,
                    timeout_keep_alive=int(cfg.idle_timeout_s), limit_concurrency=cfg.max_connections)
        return
    run_asgi(app, cfg, sock, recorder=node.metrics, name="origin", routes=ORIGIN_PATHS,
             bind_server=bind_http_gauges(node.metrics.m))
