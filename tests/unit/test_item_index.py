"""The vectorised id -> row map agrees with a plain dict, including unknown ids."""

from __future__ import annotations

import numpy as np

from edge.item_index import ItemIndex


def test_rows_match_a_dict_lookup():
    ids = [f"SKU-{i:06d}" for i in range(5000)]
    index = ItemIndex(ids)
    rng = np.random.default_rng(0)
    query = [ids[i] for i in rng.integers(0, 5000, 300)] + ["NEW-1", "", "SKU-999999", "sku-000001"]
    expected = [{k: i for i, k in enumerate(ids)}.get(q, -1) for q in query]
    assert index.rows(query).tolist() == expected


def test_single_item_catalog_and_unknowns():
    index = ItemIndex(["only"])
    assert index.rows(["only", "other"]).tolist() == [0, -1]
