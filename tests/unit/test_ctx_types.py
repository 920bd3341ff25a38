"""Every slot of the per-request state is annotated at class level (review R10): mypy (``make lint``) then checks
that a stage reads only what its ctx declares, with the type the writing stage gave it. A slot set only in
``__init__`` would get the type of its first value, and one set only by a later stage none at all."""

from __future__ import annotations

import dataclasses

import pytest

from strata.edge.stages.ctx import EdgeCtx
from strata.origin.stages.ctx import OriginCtx
from strata.shared.ranking.stages.ctx import RankCtx
from strata.shared.serving.http.state import ConnectionState, Request
from strata.streaming.ingest import IngestCtx
from strata.streaming.tier2.stages import Tier2Ctx


@pytest.mark.parametrize("cls", [RankCtx, EdgeCtx, Tier2Ctx, OriginCtx, ConnectionState, Request],
                         ids=lambda c: c.__name__)
def test_every_slot_is_annotated(cls: type) -> None:
    missing = set(cls.__slots__) - {"__weakref__"} - set(cls.__annotations__)
    assert not missing, f"{cls.__name__}: slots without a class-level annotation: {sorted(missing)}"


def test_the_ingest_ctx_is_a_slotted_dataclass() -> None:
    assert dataclasses.is_dataclass(IngestCtx) and "__slots__" in vars(IngestCtx)
