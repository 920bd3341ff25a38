"""Every bundle the tiers load, exported into the registry when it lacks one (``strata up``, ``strata demo``,
``strata simulate``): the edge scorer, the text encoder (MiniLM) and the retrieval (two-tower) + ranker pair.

The missing ones are trained on the synthetic world the registry's edge scorer was trained on (seed and
sizes from its manifest), so every bundle of one registry knows the same catalog. An edge scorer that
serves a real dataset's catalog cannot be matched here: that registry needs ``strata export --data ...``.
Torch and the exporters are imported inside the calls (only when something is missing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rich.console import Console

from strata.deploy.exporting import (
    bundles_table,
    export_text_with_progress,
    export_with_progress,
    summary_table,
    text_summary_table,
)
from strata.shared.errors import ConfigError
from strata.shared.models.bundle import CURRENT_FILE, MANIFEST_FILE, read_current
from strata.shared.models.ranker_bundle import RANKER_MODEL, RETRIEVAL_MODEL
from strata.shared.models.text_encoder import TEXT_MODEL

logger = logging.getLogger(__name__)

EDGE_MODEL = "edge-scorer"
ALL_MODELS = (EDGE_MODEL, TEXT_MODEL, RETRIEVAL_MODEL, RANKER_MODEL)


def missing_models(registry: Path) -> list[str]:
    """The models of ``ALL_MODELS`` without a CURRENT pointer in ``registry``."""
    return [m for m in ALL_MODELS if not (registry / m / CURRENT_FILE).is_file()]


def edge_manifest(registry: Path) -> dict:
    """The live edge-scorer bundle's manifest (the world it was trained on is in ``data``)."""
    bundle = registry / EDGE_MODEL / read_current(registry, EDGE_MODEL)
    return json.loads((bundle / MANIFEST_FILE).read_text())


def world_config(registry: Path):
    """The synthetic world the registry's edge scorer was trained on (``model_export.world.WorldConfig``)."""
    from strata.model_export.world import WorldConfig

    manifest = edge_manifest(registry)
    data = manifest.get("data") or {}
    if manifest.get("serving_catalog") or data.get("source") != "synthetic-world":
        raise ConfigError(f"the edge scorer in {registry} serves a real catalog "
                          f"({manifest.get('serving_catalog') or data.get('source')}); export its other bundles "
                          "with strata export --data NAME PATH", field="registry")
    return WorldConfig(seed=int(data["seed"]), n_items=int(data["n_items"]), n_users=int(data["n_users"]),
                       n_sessions=int(data["n_sessions"]))


def ensure_bundles(registry: Path, console: Console) -> list[str]:
    """Export what ``registry`` lacks, in dependency order; returns the models exported (empty: none)."""
    missing = missing_models(registry)
    if not missing:
        console.print(f"registry: {registry} (every bundle present: {', '.join(ALL_MODELS)})")
        return []
    console.print(f"registry: {registry} lacks {', '.join(missing)}; exporting {'it' if len(missing) == 1 else 'them'}"
                  " first")
    if EDGE_MODEL in missing:
        console.print(summary_table(export_with_progress(registry, console)))
    if TEXT_MODEL in missing:          # before the two-tower: it embeds the titles with this encoder
        console.print(text_summary_table(export_text_with_progress(registry, console)))
    if RETRIEVAL_MODEL in missing or RANKER_MODEL in missing:
        console.print(bundles_table([(m, r) for m, r in zip((RETRIEVAL_MODEL, RANKER_MODEL),
                                                            _export_retail(registry, console), strict=True)]))
    still = missing_models(registry)
    if still:
        raise RuntimeError(f"export finished but {registry} still lacks {', '.join(still)}")
    return missing


def _export_retail(registry: Path, console: Console) -> list:
    """The retrieval + ranker pair on the edge scorer's world, behind a progress bar (one version each)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from strata.model_export.datasets.interface import SyntheticPurchases
    from strata.model_export.retail_bundles import export_retail_bundles
    from strata.model_export.retail_models import StrataParams

    cfg = world_config(registry)
    with Progress(TextColumn("[bold]retrieval + ranker[/bold] {task.description:<16}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("starting", total=1.0)
        results = export_retail_bundles(registry, SyntheticPurchases(cfg), StrataParams(seed=cfg.seed),
                                        progress=lambda step, f: progress.update(task, description=step,
                                                                                 completed=min(max(f, 0.0), 1.0)))
        progress.update(task, description="done", completed=1.0)
    return results
