"""The parity gate on a real exported graph: passes within tolerance, refuses otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from strata.model_export.onnx_export import to_onnx
from strata.model_export.parity import MIN_ROWS, TOLERANCE, check_parity
from strata.model_export.train_scorer import ClickScorer, predict
from strata.shared.errors import ParityError
from strata.shared.ranking.features import FEATURE_DIM


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClickScorer, Path, np.ndarray]:
    import torch

    torch.manual_seed(0)
    model = ClickScorer().eval()
    path = to_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    x = np.random.default_rng(0).normal(size=(MIN_ROWS, FEATURE_DIM)).astype(np.float32)
    return model, path, x


def test_exported_graph_matches_torch(scorer) -> None:
    model, path, x = scorer
    report = check_parity(path, lambda rows: predict(model, rows), x)
    assert report["rows"] == MIN_ROWS and report["tolerance"] == TOLERANCE
    assert 0.0 <= report["max_abs_diff"] <= TOLERANCE


def test_difference_beyond_tolerance_is_refused(scorer) -> None:
    model, path, x = scorer
    with pytest.raises(ParityError, match=r"max \|ORT - source\| = 2e-05 > 1e-05 over 10000 rows"):
        check_parity(path, lambda rows: predict(model, rows) + np.float32(2e-5) * (np.arange(len(rows)) == 3), x)


def test_nan_in_the_source_is_refused(scorer) -> None:
    model, path, x = scorer

    def broken(rows: np.ndarray) -> np.ndarray:
        out = predict(model, rows)
        out[17] = np.nan
        return out

    with pytest.raises(ParityError, match=r"= inf > 1e-05.*worst row 17"):
        check_parity(path, broken, x)


def test_too_few_rows_is_refused(scorer) -> None:
    model, path, x = scorer
    with pytest.raises(ParityError, match="parity needs >= 10000 rows, got 9999"):
        check_parity(path, lambda rows: predict(model, rows), x[:-1])


def test_shape_mismatch_is_refused(scorer) -> None:
    model, path, x = scorer
    with pytest.raises(ParityError, match=r"ONNX output shape \(10000,\) != source shape \(10000, 1\)"):
        check_parity(path, lambda rows: predict(model, rows)[:, None], x)
