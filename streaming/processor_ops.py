"""The stream processor's ops port (``strata streaming process --metrics-port``): ``/metrics`` (Prometheus),
``/healthz`` (the process answers) and ``/readyz`` (``StreamProcessor.readiness``: 503 until it consumes;
200 with ``"degraded": true`` and the last log reset while one is recent). A thread of its own, like
prometheus_client's server, so a busy event loop never hides the metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import make_server

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

_STATUS = {200: "200 OK", 503: "503 Service Unavailable"}


def serve_ops(host: str, port: int, registry: CollectorRegistry,
              readiness: Callable[[], tuple[int, dict]]) -> ThreadingWSGIServer:
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            status, body = (200, {"ok": True}) if path == "/healthz" else readiness()
            data = orjson.dumps(body)
            start_response(_STATUS.get(status, f"{status} Status"),
                           [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        return metrics(environ, start_response)

    httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=httpd.serve_forever, name="processor-ops", daemon=True).start()
    return httpd
