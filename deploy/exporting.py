"""Model export with a progress bar and a short summary, shared by ``strata export`` and ``strata demo``.

The exporter (and torch behind it) is imported only here, inside the call, so commands that serve
never pay for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

logger = logging.getLogger(__name__)

# Lines of the summary: quality, the baseline it must beat, the parity gate it passed, the int8 change.
_SUMMARY_ROWS = (
    ("AUC (test)", "metrics.auc"),
    ("logloss (test)", "metrics.logloss"),
    ("AUC popularity baseline", "metrics.baseline_popularity.auc"),
    ("parity max |ORT - torch|", "parity.max_abs_diff"),
    ("parity rows", "parity.rows"),
    ("parity tolerance", "parity.tolerance"),
    ("int8 AUC change", "metrics.int8.auc_change"),
    ("int8 error", "metrics.int8.error"),
)


def export_with_progress(out: Path, console: Console, *, seed: int = 7, version: str | None = None,
                         int8: bool = True) -> Any:
    """Run ``model_export.export.export_bundle`` behind a rich progress bar; returns its ExportResult."""
    from strata.model_export.export import export_bundle

    with Progress(TextColumn("[bold]export[/bold] {task.description:<28}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("starting", total=1.0)

        def on_progress(step: str, fraction: float) -> None:
            progress.update(task, description=step, completed=min(max(fraction, 0.0), 1.0))

        result = export_bundle(out, seed=seed, version=version, int8=int8, progress=on_progress)
        progress.update(task, description="done", completed=1.0)
    return result


def export_all_with_progress(out: Path, console: Console, request: Any) -> list[tuple[str, Any]]:
    """Every bundle of ``model_export.exporters`` (edge scorer, retrieval, ranker, extras), one bar each."""
    from strata.model_export.exporters import EXPORTERS, EXTRA_EXPORTERS

    results: list[tuple[str, Any]] = []
    with Progress(TextColumn("[bold]{task.fields[bundle]:<18}[/bold] {task.description:<16}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for name, exporter in EXPORTERS:
            task = progress.add_task("starting", total=1.0, bundle=name)

            def on_progress(step: str, fraction: float, task: Any = task) -> None:
                progress.update(task, description=step, completed=min(max(fraction, 0.0), 1.0))

            results += [(name, r) for r in exporter(out, request, on_progress)]
            progress.update(task, description="done", completed=1.0)
        for name, extra in EXTRA_EXPORTERS:
            task = progress.add_task("exporting", total=1.0, bundle=name)
            produced = extra(out)
            results += [(name, r) for r in (produced if isinstance(produced, list) else [produced])]
            progress.update(task, description="done", completed=1.0)
    return results


def ensure_exported(registry: Path, models: tuple[str, ...], console: Console, request: Any) -> None:
    """When one of ``models`` has no CURRENT pointer in ``registry``, export every bundle into it first, as
    ``strata export --out REGISTRY`` does with ``request`` (a ``model_export.exporters.ExportRequest``)."""
    from strata.shared.models.bundle import CURRENT_FILE

    missing = [m for m in models if not (registry / m / CURRENT_FILE).is_file()]
    if not missing:
        console.print(f"registry: {registry} (existing bundles)")
        return
    console.print(f"registry: {registry} has no {', '.join(missing)}; exporting first "
                  f"(strata export --out {registry} --items {request.n_items} --no-text)")
    console.print(bundles_table(export_all_with_progress(registry, console, request)))


def bundles_table(results: list[tuple[str, Any]]) -> Table:
    """One line per bundle written: where, version, seconds, the parity gate it passed."""
    table = Table(title="exported bundles")
    for column in ("bundle", "version", "path", "seconds", "parity max |ORT - torch|", "parity rows"):
        table.add_column(column)
    for _, r in results:
        parity = getattr(r, "parity", None) or {}
        diff = parity.get("max_abs_diff")
        table.add_row(Path(r.bundle_dir).parent.name, str(r.version), str(r.bundle_dir),
                      f"{r.seconds:.1f}" if getattr(r, "seconds", None) is not None else "",
                      _fmt(diff) if diff is not None else "", str(parity.get("rows", "")))
    return table


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def _bundle_table(title: str, result: Any) -> Table:
    """A what/value table opening with the bundle's version, where it went and how long it took."""
    table = Table(title=title)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("version", str(result.version))
    table.add_row("bundle", str(result.bundle_dir))
    table.add_row("seconds", f"{result.seconds:.1f}")
    return table


def summary_table(result: Any) -> Table:
    """Version, where it went, how long it took, quality against the baseline, and the parity gate."""
    table = _bundle_table("exported bundle", result)
    tree = {"metrics": result.metrics or {}, "parity": getattr(result, "parity", None) or {}}
    for label, path in _SUMMARY_ROWS:
        value = _lookup(tree, path)
        if value is not None:
            table.add_row(label, _fmt(value))
    return table


def export_text_with_progress(out: Path, console: Console, *, version: str | None = None) -> Any:
    """``model_export.text_encoder.export_text_encoder`` behind a spinner (MiniLM -> ONNX, parity, the
    registry's current catalog embedded and its HNSW shard built); returns its TextExportResult."""
    from strata.model_export.text_encoder import export_text_encoder

    with console.status("[bold]export[/bold] text encoder (MiniLM -> ONNX, parity, catalog text vectors, shard)"):
        return export_text_encoder(out, version)


def text_summary_table(result: Any) -> Table:
    table = _bundle_table("exported text encoder", result)
    table.add_row("parity min cosine (ONNX vs sentence-transformers)", f"{result.parity['min_cosine']:.7f}")
    table.add_row("parity tolerance", _fmt(result.parity["tolerance_min_cosine"]))
    table.add_row("int8", "shipped" if result.int8.get("shipped") else
                  f"not shipped (min cosine {result.int8.get('min_cosine', result.int8.get('error'))})")
    if result.catalog:
        table.add_row("catalog items embedded", f"{result.catalog['items']} ({result.catalog['texts_per_s']}/s)")
    if result.shard:
        table.add_row("shard (HNSW) build s", f"{result.shard['upsert_s'] + result.shard['optimize_s']:.1f}")
    return table
