"""Baseline: plain FastAPI + pydantic request/response models + onnxruntime, under uvicorn
(uvloop + httptools, access log off).

What most teams ship first: declarative validation and serialisation by pydantic, an ``async def``
route (no thread-pool hop for this CPU-bound handler), the naive per-request ranking.
Run: ``python -m loadtest.baselines.fastapi_app --registry R --port P``.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from strata.loadtest.baselines.naive_ranker import NaiveRanker

Id = Field(min_length=1, max_length=128)


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["web", "app", "email", "sms", "pos"] = "web"
    device: Literal["desktop", "mobile", "tablet", "other"] = "other"
    country: str = Field("", max_length=8)
    hour: int = Field(12, ge=0, le=23)


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field("default", min_length=1, max_length=128)
    user_id: str = Id
    session_id: str = Id
    slot: str = Field("home", min_length=1, max_length=128)
    k: int = Field(10, ge=1, le=100)
    candidates: list[str] | None = Field(None, max_length=1000)
    context: ContextIn = ContextIn()
    explain: bool = False


class ItemOut(BaseModel):
    item_id: str
    score: float
    explored: bool


class RecommendOut(BaseModel):
    items: list[ItemOut]
    model_version: str
    request_id: str


def build_app(ranker: NaiveRanker) -> FastAPI:
    app = FastAPI(title="fastapi baseline")

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    @app.post("/v1/recommend", response_model=RecommendOut)
    async def recommend(body: RecommendIn) -> RecommendOut:
        ctx = body.context
        ranked = ranker.rank(body.candidates, ctx.channel, ctx.device, ctx.hour, body.k)
        items = [ItemOut(item_id=i, score=s, explored=e)
                 for i, s, e in zip(ranked.item_ids, ranked.scores, ranked.explored, strict=True)]
        return RecommendOut(items=items, model_version=ranker.version, request_id=uuid.uuid4().hex)

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="plain FastAPI + pydantic baseline recommend server")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="edge-scorer")
    args = ap.parse_args(argv)
    app = build_app(NaiveRanker(args.registry, args.model))
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
