"""The edge's bundle loader: ``shared.models.scoring_bundle`` (tier 2 loads bundles the same way)."""

from __future__ import annotations

from strata.shared.models.scoring_bundle import LoadedBundle, load_bundle

__all__ = ["LoadedBundle", "load_bundle"]
