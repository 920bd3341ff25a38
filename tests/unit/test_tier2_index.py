"""Where tier 2's ANN index lives (``streaming.tier2.model.load_model``)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from strata.shared.config import Tier2Settings
from strata.streaming.tier2 import model as tier2_model


class _Opened(Exception):
    pass


def test_a_qdrant_index_without_a_url_runs_in_memory(monkeypatch) -> None:
    """``vector_index: {backend: qdrant}`` without ``url`` used to open a local-mode Qdrant at the path 'None'
    (``str(None)``: a directory in the working directory); it runs in memory, as the origin's does (found by mypy)."""
    bundle = types.SimpleNamespace(item_vectors=np.zeros((3, 4), dtype=np.float32), version="1.0.0")
    monkeypatch.setattr(tier2_model, "load_bundle", lambda *a, **k: bundle)
    opened: dict = {}

    def open_index(backend: str, location: object, **kw: object) -> None:
        opened.update(backend=backend, location=location)
        raise _Opened

    monkeypatch.setattr(tier2_model, "open_vector_index", open_index)
    with pytest.raises(_Opened):
        tier2_model.load_model(Tier2Settings(vector_index={"backend": "qdrant"}), "registry", "edge-scorer", None)
    assert opened == {"backend": "qdrant", "location": ":memory:"}
