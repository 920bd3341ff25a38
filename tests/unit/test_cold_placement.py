"""``shared.models.cold_placement``: the centroid the exporter and the origin place vector-less items at."""

from __future__ import annotations

import numpy as np

from strata.shared.models.cold_placement import category_centroids


def test_centroid_is_the_unit_mean_of_the_categorys_items_with_a_vector() -> None:
    vecs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 2], [0, 0, 0]], dtype=np.float32)
    cats = ["a", "a", "a", "b", "c"]
    out = category_centroids(vecs, cats, ["a", "c", "b", "a"])
    assert list(out) == ["a", "c", "b"]
    assert np.allclose(out["a"], np.array([1, 1, 0]) / np.sqrt(2)) and out["a"].dtype == np.float32
    assert np.allclose(out["b"], [0, 0, 1])
    assert out["c"] is None                      # no item of "c" has a vector: the caller decides


def test_opposite_vectors_have_no_direction() -> None:
    vecs = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    assert category_centroids(vecs, ["a", "a"], ["a"]) == {"a": None}
