"""The vectorised id -> row map agrees with a plain dict, including unknown ids."""

from __future__ import annotations

import os

import numpy as np
import pytest

from strata.shared.ranking import row_map as item_index
from strata.shared.ranking.row_map import ItemIndex


def test_rows_match_a_dict_lookup():
    ids = [f"SKU-{i:06d}" for i in range(5000)]
    index = ItemIndex(ids)
    rng = np.random.default_rng(0)
    query = [ids[i] for i in rng.integers(0, 5000, 300)] + ["NEW-1", "", "SKU-999999", "sku-000001"]
    expected = [{k: i for i, k in enumerate(ids)}.get(q, -1) for q in query]
    assert index.lookup(query)[0].tolist() == expected


def test_single_item_catalog_and_unknowns():
    index = ItemIndex(["only"])
    assert index.lookup(["only", "other"])[0].tolist() == [0, -1]


@pytest.mark.parametrize("compiled", [True, False])
def test_compiled_and_numpy_paths_agree(compiled: bool) -> None:
    ids = [f"item-{i}" for i in range(3000)]
    index = ItemIndex(ids, compiled=compiled)
    query = ids[::7] + ["nope", "item-3000", ids[5]] + ids[:3]
    rows, unknown = index.lookup(query)
    expected = [{k: i for i, k in enumerate(ids)}.get(q, -1) for q in query]
    assert rows.tolist() == expected and unknown == 2
    assert index.lookup([])[0].shape == (0,)
    assert index.lookup(tuple(query[:5]))[0].tolist() == expected[:5]     # not a list: the NumPy path


def test_compiled_kernel_is_built_where_a_compiler_exists() -> None:
    if os.environ.get("STRATA_ALLOW_NUMPY_SAMPLER") == "1":
        pytest.skip("C kernels not required here")
    assert item_index.COMPILED


def test_compiled_lookup_refuses_non_str_ids() -> None:
    index = ItemIndex(["a", "b"])
    if not index._compiled:
        pytest.skip("compiled kernel not built")
    with pytest.raises(TypeError, match=r"ids\[1\]"):
        index.lookup(["a", 3])


def test_empty_catalog_knows_nothing() -> None:
    for compiled in (True, False):
        rows, unknown = ItemIndex([], compiled=compiled).lookup(["a", "b"])
        assert rows.tolist() == [-1, -1] and unknown == 2
