"""The ops routes every tier's front door serves: ``/healthz``, ``/readyz`` and ``/metrics``.

``GET`` and ``HEAD`` on the health routes (load balancers health-check with either); ``/readyz`` answers
what the tier's ``readiness()`` says, 503 with ``Retry-After``; ``/metrics`` is its Prometheus text.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI, Response

OPS_ROUTES = ("/healthz", "/readyz", "/metrics")


class OpsView(Protocol):
    def readiness(self) -> tuple[int, dict]: ...

    def exposition(self) -> bytes: ...


def install_ops_routes(api: FastAPI, ops: OpsView) -> None:
    # A two-method route serves GET and HEAD; the GET-only twin registered after it only documents the
    # route (FastAPI's OpenAPI output warns about a route with two methods).
    @api.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @api.api_route("/readyz", methods=["GET", "HEAD"], include_in_schema=False)
    def readyz(response: Response) -> dict:
        status, body = ops.readiness()
        response.status_code = status
        if status == 503:
            response.headers["Retry-After"] = "1"
        return body

    api.get("/healthz")(healthz)
    api.get("/readyz")(readyz)

    @api.get("/metrics")
    def metrics() -> Response:
        return Response(ops.exposition(), media_type="text/plain; version=0.0.4")
