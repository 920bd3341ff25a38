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
_METRIC_COLUMNS = ("ndcg@10", "recall@10", "recall@20", "recall@50", "mrr", "explore_ndcg@10", "explore_recall@20",
                   "coverage", "diversity", "novelty")


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
    """One row per model and segment, the mean over the training seeds with ± the spread (max - min) where a
    model has several; the tuned parameters, the split counts and Strata against the best baseline in the
    caption."""
    split = report["split"]
    table = Table(title=f"offline evaluation, test invoices from {split['cut']} "
                        f"({report['seconds'].get('wall', report['seconds'].get('total', 0.0)):.0f} s)")
    table.add_column("model", style="bold")
    table.add_column("segment")
    table.add_column("invoices", justify="right")
    for name in _METRIC_COLUMNS:
        table.add_column(name.replace("explore_", "explore "), justify="right")
    spreads = report.get("spread", {})
    for model, segments in report["models"].items():
        seeded = len(report.get("runs", {}).get(model, ())) > 1
        for segment, metrics in segments.items():
            spread = spreads.get(model, {}).get(segment, {})
            values = [_cell(metrics[m], spread.get(m) if seeded and m == "ndcg@10" else None)
                      for m in _METRIC_COLUMNS]
            table.add_row(model, segment, str(split["test"][segment]["invoices"]), *values)
    tuned = [f"{name}: {t['params']} (validation ndcg@10 {t['validation_ndcg@10']})"
             for name, t in report.get("tuning", {}).items()]
    train = split["train"]
    seeds = report.get("seeds", [])
    lines = [f"train: {train['invoices']} invoices, {train['customers']} customers before {split['cut']}; "
             f"seeded models: mean ± (max - min) over training seeds {seeds}", *tuned]
    comparison = report.get("comparison", {})
    for segment in ("returning", "unseen"):
        c = comparison.get(segment)
        if c:
            lines.append(f"strata vs best baseline, {segment}: {c['ratio']:.3f}x {c['best_baseline']} "
                         f"(ndcg@10 {c['strata']:.4f} vs {c['baseline']:.4f}; margin above the spread: "
                         f"{'yes' if c['margin_exceeds_spread'] else 'no'})")
    table.caption = "\n".join(lines)
    return table


def _cell(value: float | None, spread: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if spread is None else f"{value:.4f} ±{spread:.4f}"
