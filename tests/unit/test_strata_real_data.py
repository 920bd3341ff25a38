"""Strata's served pipeline on the real UCI Online Retail file, at reduced size (skipped without the file).

Reduced: the five months before the cut, small towers, a short label window, the first test invoices.
The full-size figures (README) come from ``strata eval``, a command, not a test. Small as it is, the
pipeline must beat popularity clearly on returning customers: it knows what they bought.
"""

from __future__ import annotations

import numpy as np
import pytest

from strata.model_export.datasets.online_retail import DEFAULT_PATH, load_online_retail
from strata.model_export.evaluation.baskets import baskets_from_retail
from strata.model_export.evaluation.metrics import ndcg_at
from strata.model_export.evaluation.popularity import Popularity
from strata.model_export.evaluation.split import parse_cut, temporal_split
from strata.model_export.evaluation.strata import StrataRecommender
from strata.model_export.parity import TOLERANCE
from strata.model_export.ranker import RankerParams
from strata.model_export.retail_models import StrataParams
from strata.model_export.two_tower import TowerParams

pytestmark = pytest.mark.skipif(not DEFAULT_PATH.is_file(),
                                reason=f"UCI Online Retail not found at {DEFAULT_PATH} (the team data folder)")

REDUCED = StrataParams(tower=TowerParams(dim=16, history_len=10, epochs=1, batch=2048, max_pairs_per_invoice=5),
                       ranker=RankerParams(hidden=(16,), epochs=2), label_days=21.0, parity_min_rows=2000)


def test_strata_on_real_data_beats_popularity_on_returning_customers() -> None:
    baskets = baskets_from_retail(load_online_retail(DEFAULT_PATH))
    cut = parse_cut("2011-11-01")
    recent = baskets.where(baskets.ts_ms >= parse_cut("2011-06-01"))
    split = temporal_split(recent, cut, parse_cut("2011-11-15"))
    model = StrataRecommender(REDUCED, num_threads=2)
    model.fit(split.train)
    queries = split.queries
    recs = model.recommend(queries, 10)
    assert all(np.unique(r).size == 10 for r in recs)
    assert model.report["parity"]["user_tower"]["max_abs_diff"] <= TOLERANCE
    assert model.report["parity"]["ranker"]["rows"] >= REDUCED.parity_min_rows
    popular = Popularity()
    popular.fit(split.train)
    returning = queries.segment("returning")
    ours = ndcg_at(recs[returning], queries.relevant[returning], 10)
    base = ndcg_at(popular.recommend(queries, 10)[returning], queries.relevant[returning], 10)
    assert ours > 1.5 * base, (ours, base)
