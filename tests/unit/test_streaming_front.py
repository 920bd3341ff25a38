"""The streaming service's ASGI front (``streaming.app._Front``): POST /v1/events goes straight to the ingest
pipeline, everything else to FastAPI; body limits, errors in the mapper's shape, every answer counted.
No broker here: every case is answered before the log is touched."""

from __future__ import annotations

import asyncio

import orjson

from strata.shared.config import load_settings
from strata.streaming.app import build_app
from strata.streaming.service import IngestService

LIMIT = 2048


def _app():
    svc = IngestService(load_settings(streaming={"broker": "127.0.0.1:1", "max_body_bytes": LIMIT}).streaming)
    return build_app(svc), svc


def _call(app, method: str, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]],
          disconnect: bool = False) -> list[dict]:
    """Drive the ASGI app with ``chunks`` as the body (the last one ends it, unless ``disconnect``)."""
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect}
             for i, c in enumerate(chunks)]
    if disconnect:
        queue.append({"type": "http.disconnect"})

    async def receive() -> dict:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    asyncio.run(app(scope, receive, send))
    return sent


def _status_and_body(sent: list[dict]) -> tuple[int, dict]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], orjson.loads(body)


def _count(svc: IngestService, status: str) -> float:
    line = f'strata_ingest_requests_total{{status="{status}"}}'
    for row in svc.exposition().decode().splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    return 0.0


def test_a_declared_body_over_the_limit_is_413_naming_body() -> None:
    app, svc = _app()
    sent = _call(app, "POST", "/v1/events", [b"{}"],
                 [(b"content-type", b"application/json"), (b"content-length", str(LIMIT + 1).encode())])
    status, body = _status_and_body(sent)
    assert status == 413
    assert body["error"]["field"] == "body" and str(LIMIT) in body["error"]["reason"]
    assert _count(svc, "413") == 1


def test_an_undeclared_body_over_the_limit_is_cut_off_at_the_limit() -> None:
    app, svc = _app()
    chunks = [b"x" * 1000] * 5                # no Content-Length (chunked): 5000 bytes > 2048
    sent = _call(app, "POST", "/v1/events", chunks, [(b"content-type", b"application/json")])
    status, body = _status_and_body(sent)
    assert status == 413 and body["error"]["field"] == "body"


def test_a_body_in_several_chunks_is_joined_and_decoded() -> None:
    app, _ = _app()
    sent = _call(app, "POST", "/v1/events", [b'{"events": ', b"7}"], [(b"content-type", b"application/json")])
    status, body = _status_and_body(sent)
    assert status == 422 and body["error"]["field"] == "events"       # reached the envelope stage whole


def test_malformed_json_is_400_in_the_negotiated_codec() -> None:
    app, svc = _app()
    sent = _call(app, "POST", "/v1/events", [b"{not json"], [(b"content-type", b"application/json")])
    status, body = _status_and_body(sent)
    assert status == 400 and body["error"]["code"] == "malformed_body"
    assert _count(svc, "400") == 1


def test_a_client_that_disconnects_mid_body_gets_no_answer_and_nothing_appended() -> None:
    app, svc = _app()
    sent = _call(app, "POST", "/v1/events", [b'{"events": ['], [(b"content-type", b"application/json")],
                 disconnect=True)
    assert sent == []
    assert _count(svc, "202") == 0


def test_other_routes_go_to_fastapi_and_are_counted_too() -> None:
    app, svc = _app()
    status, body = _status_and_body(_call(app, "GET", "/v1/events", [b""], []))
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, _ = _status_and_body(_call(app, "GET", "/nope", [b""], []))
    assert status == 404
    assert _count(svc, "405") == 1 and _count(svc, "404") == 1
