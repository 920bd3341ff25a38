"""Co-visitation: the exporter's table on hand-made sessions (exact scores), and the origin's lookup."""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.covisitation import covisitation_table, write_covisitation
from strata.origin.covisitation import Covisitation, load_covisitation
from strata.shared.errors import BundleError


def test_table_is_the_cosine_of_session_sets_counted_once_per_session() -> None:
    # session 0: items 0,1,2 (item 0 twice); session 1: 0,1; session 2: 2,3; item 4 never co-occurs
    session = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3])
    item = np.array([0, 1, 2, 0, 0, 1, 2, 3, 4])
    nb, sc = covisitation_table(session, item, n_items=5, top_n=3)
    assert nb.dtype == np.int32 and nb.shape == sc.shape == (5, 3)
    assert nb[0].tolist() == [1, 2, -1]
    assert sc[0].tolist() == pytest.approx([2 / np.sqrt(2 * 2), 1 / np.sqrt(2 * 2), 0.0])
    assert nb[2].tolist() == [3, 0, 1]                    # 1/sqrt(2*1) first, then the ties by row
    assert sc[2].tolist() == pytest.approx([1 / np.sqrt(2), 0.5, 0.5])
    assert nb[4].tolist() == [-1, -1, -1] and not sc[4].any()
    nb2, _ = covisitation_table(session, item, n_items=5, top_n=3, min_sessions=2)
    assert nb2[0].tolist() == [1, -1, -1]                 # only the pair seen in two sessions


def test_lookup_merges_seeds_keeps_best_score_and_leaves_seeds_out(tmp_path) -> None:
    nb = np.array([[1, 2, -1], [0, 3, 2], [3, -1, -1], [-1, -1, -1]], dtype=np.int32)
    sc = np.array([[0.9, 0.2, 0], [0.9, 0.5, 0.4], [0.7, 0, 0], [0, 0, 0]], dtype=np.float32)
    write_covisitation(tmp_path, nb, sc)
    table = load_covisitation(tmp_path, 4)
    rows, scores = table.of(np.array([0, 1]))
    assert rows.tolist() == [3, 2] and scores.tolist() == pytest.approx([0.5, 0.4])
    rows, scores = table.of(np.array([2, 99]))                # a row past the table (a new item): no neighbours
    assert rows.tolist() == [3] and scores.tolist() == pytest.approx([0.7])
    assert Covisitation(nb, sc).of(np.array([3]))[0].tolist() == []
    with pytest.raises(BundleError, match="outside the 3 items"):
        load_covisitation(tmp_path, 3)
    assert load_covisitation(tmp_path / "none", 4) is None

