"""The ASGI bridge: everything off the hot route (ops routes, /docs, other methods and paths) is answered
by the same ASGI app uvicorn would serve (``edge.app.build_app``; for tiers 2 and 3 every route), called with one request's scope and
its whole body; the app's answer is collected and written by the connection in request order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import unquote

import httptools

from strata.shared.errors import MalformedHttp
from strata.shared.serving.codecs import JSON
from strata.shared.serving.error_mapper import error_reply
from strata.shared.serving.front_door import Recorder
from strata.shared.serving.http.message import Request
from strata.shared.serving.http.writer import ctype


async def call_app(app: Callable, req: Request, client: tuple | None, server: tuple | None,
                   lost: asyncio.Event, recorder: Recorder,
                   state: dict | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of ``app``'s answer to ``req``. ``lost`` is set when the client goes away
    (the app then receives ``http.disconnect``). A target that is not a URL is answered 400 here."""
    try:
        url = httptools.parse_url(req.url)
    except httptools.HttpParserInvalidURLError:
        r = error_reply(MalformedHttp("request target is not a valid URL", field="url"), JSON)
        recorder.answered("other", r.status, req.t0 or time.perf_counter_ns())
        return r.status, [(b"content-type", ctype(r.media))], r.body
    path = unquote(url.path.decode("latin-1"))      # ASGI: percent-decoded (as uvicorn does)
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": req.method.decode("latin-1"), "scheme": "http", "path": path, "raw_path": url.path,
        "query_string": url.query or b"", "root_path": "", "headers": req.headers,
        "client": client, "server": server,
    }
    if state is not None:               # what the app's lifespan left (a shallow copy per request, as uvicorn)
        scope["state"] = state.copy()
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await lost.wait()
        return {"type": "http.disconnect"}

    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def send(msg: dict) -> None:
        nonlocal status, headers
        if msg["type"] == "http.response.start":
            status = msg["status"]
            headers = list(msg.get("headers", []))
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await app(scope, receive, send)
    return status, headers, b"".join(chunks)
