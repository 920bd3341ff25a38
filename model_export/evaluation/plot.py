"""Recall@K curves (PNG), one panel per customer segment. matplotlib is the ``eval`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strata.model_export.evaluation.split import SEGMENTS
from strata.shared.errors import ConfigError


def plot_recall(report: dict[str, Any], path: Path) -> Path:
    """Write the recall-at-K curves of ``report["recall_at_k"]`` to ``path``; returns the path."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError(f"--plot needs the 'eval' extra (pip install -e '.[eval]'): {exc}", field="plot") from None
    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, list[float]]] = report["recall_at_k"]
    fig, axes = plt.subplots(1, len(SEGMENTS), figsize=(12, 4.5), sharey=True)
    for ax, segment in zip(axes, SEGMENTS, strict=True):
        count = report["split"]["test"][segment]["invoices"]
        for name, by_segment in curves.items():
            ys = by_segment.get(segment) or []
            ax.plot(range(1, len(ys) + 1), ys, label=name)
        ax.set_title(f"{segment} customers ({count} test invoices)")
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Recall@K")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Online Retail, test invoices from {report['split']['cut']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
