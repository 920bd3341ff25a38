"""Every bundle ``strata export`` writes, in order: one entry per exporter, so a new bundle joins here.

An exporter takes the registry directory and the export request and returns the ``ExportResult`` of
each bundle it wrote. ``EXTRA_EXPORTERS`` is the hook for bundles built elsewhere that only need the
registry path, e.g. the MiniLM ``text-encoder`` (``model_export.text_encoder.export_text_encoder``):
append ``("text-encoder", lambda out: export_text_encoder(out))`` and ``strata export`` writes it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.shared.errors import ConfigError

DATASETS = ("synthetic", "online-retail")
Progress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class ExportRequest:
    seed: int = 7
    version: str | None = None
    int8: bool = True
    data: str = "synthetic"
    data_path: Path | None = None
    n_items: int = 12_000            # the synthetic world's catalog size (ignored for a real dataset)

    def __post_init__(self) -> None:
        if self.n_items < 100:
            raise ConfigError(f"the synthetic world needs at least 100 items, got {self.n_items}", field="items")
        if self.data not in DATASETS:
            raise ConfigError(f"unknown dataset {self.data!r}; valid: {', '.join(DATASETS)}", field="data")
        if self.data == "online-retail" and self.data_path is None:
            raise ConfigError("online-retail needs the path of its Parquet file", field="data")


def export_edge_scorer(out: Path, request: ExportRequest, progress: Progress | None = None) -> list[Any]:
    from strata.model_export.export import export_bundle

    catalog = None
    if request.data == "online-retail":
        from strata.model_export.datasets.online_retail import load_online_retail
        from strata.model_export.serving_catalog import retail_serving_catalog

        assert request.data_path is not None
        catalog = retail_serving_catalog(load_online_retail(request.data_path, seed=request.seed), request.seed)
    return [export_bundle(out, seed=request.seed, version=request.version, int8=request.int8, progress=progress,
                          catalog=catalog, n_items=request.n_items)]


def export_retrieval_and_ranker(out: Path, request: ExportRequest, progress: Progress | None = None) -> list[Any]:
    from strata.model_export.datasets.interface import OnlineRetail, PurchaseDataset, SyntheticPurchases
    from strata.model_export.retail_bundles import export_retail_bundles
    from strata.model_export.retail_models import StrataParams
    from strata.model_export.world import WorldConfig

    dataset: PurchaseDataset
    if request.data == "online-retail":
        assert request.data_path is not None
        dataset = OnlineRetail(Path(request.data_path), seed=request.seed)
    else:
        dataset = SyntheticPurchases(WorldConfig(seed=request.seed, n_items=request.n_items))
    return export_retail_bundles(out, dataset, StrataParams(seed=request.seed), request.version, progress)


EXPORTERS: list[tuple[str, Callable[[Path, ExportRequest, Progress | None], list[Any]]]] = [
    ("edge-scorer", export_edge_scorer),
    ("retrieval + ranker", export_retrieval_and_ranker),
]
# Bundles that need only the registry path (see the module docstring); the lead adds the text encoder here.
EXTRA_EXPORTERS: list[tuple[str, Callable[[Path], Any]]] = []
