"""``strata eval``: run the offline evaluation, print models x segments x metrics, write JSON and a PNG.

The harness (numpy, scipy, sklearn, implicit) is imported only inside the call, so ``strata --help``
and the serving commands never pay for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from strata.shared.errors import ConfigError

logger = logging.getLogger(__name__)

DATASETS = ("online-retail",)
_METRIC_COLUMNS = ("ndcg@10", "recall@10", "recall@20", "recall@50", "mrr", "coverage", "diversity", "novelty")


def run_eval(dataset: str, path: Path, console: Console, *, cut: str = "2011-11-01",
             models: str | None = None, json_path: Path | None = None,
             plot_path: Path | None = None) -> dict[str, Any]:
    """Evaluate every model on ``dataset`` at ``path``; returns the report (also written to ``json_path``)."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}", field="data")
    from strata.model_export.evaluation.harness import EvaluationConfig, evaluate_online_retail
    from strata.model_export.evaluation.models import DEFAULT_MODELS

    names = DEFAULT_MODELS if models is None else tuple(m.strip() for m in models.split(",") if m.strip())
    if not names:
        raise ConfigError("give at least one model name", field="models")
    config = EvaluationConfig(cut=cut, models=names)
    started = time.perf_counter()
    with console.status("eval: starting") as status:
        report = evaluate_online_retail(path, config, progress=lambda step: status.update(f"eval: {step}"))
    report["seconds"]["wall"] = round(time.perf_counter() - started, 2)
    if json_path is not None:
        _write(json_path, "--json", lambda: json_path.write_text(json.dumps(report, indent=2) + "\n", "utf-8"))
    if plot_path is not None:
        from strata.model_export.evaluation.plot import plot_recall

        _write(plot_path, "--plot", lambda: plot_recall(report, plot_path))
    return report


def _write(path: Path, flag: str, write: Callable[[], object]) -> None:
    """An unwritable output path is a usage error with one clear line, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", field=flag) from None


def results_table(report: dict[str, Any]) -> Table:
    """One row per model and segment; the tuned parameters and split counts go in the caption."""
    split = report["split"]
    table = Table(title=f"offline evaluation, test invoices from {split['cut']} "
                        f"({report['seconds'].get('wall', report['seconds'].get('total', 0.0)):.0f} s)")
    table.add_column("model", style="bold")
    table.add_column("segment")
    table.add_column("invoices", justify="right")
    for name in _METRIC_COLUMNS:
        table.add_column(name, justify="right")
    for model, segments in report["models"].items():
        for segment, metrics in segments.items():
            values = [("-" if metrics[m] is None else f"{metrics[m]:.4f}") for m in _METRIC_COLUMNS]
            table.add_row(model, segment, str(split["test"][segment]["invoices"]), *values)
    tuned = [f"{name}: {t['params']} (validation ndcg@10 {t['validation_ndcg@10']})"
             for name, t in report.get("tuning", {}).items()]
    train = split["train"]
    table.caption = "\n".join([f"train: {train['invoices']} invoices, {train['customers']} customers "
                               f"before {split['cut']}", *tuned])
    return table
