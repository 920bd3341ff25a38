"""Offline metrics on the held-out (later-in-time) rows: the scorer against a popularity-only baseline.

The baseline is a one-feature logistic regression on the same log-popularity column the scorer sees,
so the comparison isolates what the rest of the features (category, price, context, session) add.
The oracle numbers use the world's true click probabilities: the ceiling no model can beat.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from strata.shared.ranking.features import N_CATEGORIES

POPULARITY_COLUMN = N_CATEGORIES + 1  # log1p(popularity) / scale in shared.ranking.features.item_block
_EPS = 1e-7


def click_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return {"auc": round(float(roc_auc_score(y, p)), 6), "logloss": round(float(log_loss(y, p)), 6)}


def popularity_baseline(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        y_test: np.ndarray) -> dict[str, float]:
    clf = LogisticRegression(C=1.0)
    clf.fit(x_train[:, [POPULARITY_COLUMN]], y_train)
    return click_metrics(y_test, clf.predict_proba(x_test[:, [POPULARITY_COLUMN]])[:, 1])


def change(candidate: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """candidate - reference for each metric (positive AUC change / negative logloss change is better)."""
    return {f"{k}_change": round(candidate[k] - reference[k], 6) for k in reference}
