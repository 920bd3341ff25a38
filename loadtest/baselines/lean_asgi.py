"""Baseline: a raw ASGI callable + orjson under uvicorn (uvloop + httptools), no framework.

The lean way to serve the model: read the body, orjson, hand-written validation (the same
``parse_recommend`` the edge uses), the naive per-request ranking, orjson out.
Run: ``python -m loadtest.baselines.lean_asgi --registry R --port P``.
"""

from __future__ import annotations

import argparse
import uuid

import orjson
import uvicorn

from strata.loadtest.baselines.naive_ranker import NaiveRanker
from strata.shared.contracts.api import parse_recommend
from strata.shared.errors import MalformedBody, StrataError

_JSON = [(b"content-type", b"application/json")]


def build_app(ranker: NaiveRanker):
    """ASGI app bound to one loaded ranker (built at start, never at import)."""

    async def respond(send, status: int, payload: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/readyz" or path == "/healthz":
            await respond(send, 200, b'{"ready":true}')
            return
        if path != "/v1/recommend" or scope["method"] != "POST":
            await respond(send, 404, b'{"error":{"code":"not_found"}}')
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        try:
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise MalformedBody(f"body is not valid JSON: {exc}", field="body") from None
            req = parse_recommend(obj)
        except StrataError as exc:
            await respond(send, exc.status, orjson.dumps(exc.to_dict()))
            return
        ctx = req.context
        ranked = ranker.rank(req.candidates, ctx.channel, ctx.device, ctx.hour, req.k)
        items = [{"item_id": i, "score": s, "explored": e}
                 for i, s, e in zip(ranked.item_ids, ranked.scores, ranked.explored, strict=True)]
        await respond(send, 200, orjson.dumps({"items": items, "model_version": ranker.version,
                                               "request_id": uuid.uuid4().hex}))

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="lean raw-ASGI + orjson baseline recommend server")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="edge-scorer")
    args = ap.parse_args(argv)
    app = build_app(NaiveRanker(args.registry, args.model))
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
