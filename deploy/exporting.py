"""Model export with a progress bar and a short summary, shared by ``strata export`` and ``strata demo``.

The exporter (and torch behind it) is imported only here, inside the call, so commands that serve
never pay for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

logger = logging.getLogger(__name__)

# Metrics worth a line in the summary: quality and the parity gate the bundle had to pass.
_SUMMARY_WORDS = ("auc", "parity", "logloss", "int8")


def export_with_progress(out: Path, console: Console, *, seed: int = 7, version: str | None = None,
                         int8: bool = True) -> Any:
    """Run ``model_export.pipeline.export_bundle`` behind a rich progress bar; returns its ExportResult."""
    from model_export.pipeline import export_bundle

    with Progress(TextColumn("[bold]export[/bold] {task.description:<28}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("starting", total=1.0)

        def on_progress(step: str, fraction: float) -> None:
            progress.update(task, description=step, completed=min(max(fraction, 0.0), 1.0))

        result = export_bundle(out, seed=seed, version=version, int8=int8, progress=on_progress)
        progress.update(task, description="done", completed=1.0)
    return result


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, prefix=f"{name}.")
        else:
            yield name, value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def summary_table(result: Any) -> Table:
    """Version, where it went, how long it took, and the AUC/parity figures from the bundle's metrics."""
    table = Table(title="exported bundle", show_header=True)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("version", str(result.version))
    table.add_row("bundle", str(result.bundle_dir))
    table.add_row("seconds", f"{result.seconds:.1f}")
    for name, value in _flatten(result.metrics or {}):
        if any(word in name.lower() for word in _SUMMARY_WORDS):
            table.add_row(name, _fmt(value))
    return table
