"""Derived item categories for logs that have none (UCI Online Retail has only a product name).

Categories feed intra-list diversity in offline evaluation and, later, the "at most 3 of one category"
guardrail, so they should follow product type (candles, bags, cards), not colour. The recipe: TF-IDF over
the lower-cased words of each item's description (words of two letters or more, seen in at least two
items, sub-linear term frequency) with colour and size words removed, a seeded TruncatedSVD to 64
dimensions, L2-normalised rows, then a seeded KMeans. Everything is seeded, so the same titles always
give the same categories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

N_CATEGORIES = 24
SVD_DIM = 64
# Colour, size and filler words: without them clusters follow product type rather than colour.
IGNORED_WORDS = ["white", "red", "pink", "blue", "green", "black", "ivory", "cream", "gold", "silver", "purple",
                 "yellow", "orange", "brown", "grey", "natural", "small", "large", "set", "of", "and", "the",
                 "in", "with"]
_WORD = r"(?u)\b[a-z][a-z]+\b"


def derive_categories(titles: np.ndarray, n_categories: int = N_CATEGORIES,
                      seed: int = 7) -> tuple[np.ndarray, dict[str, Any]]:
    """int64 category per item and a JSON-ready description (recipe, cluster sizes, top words).

    Tiny catalogs get fewer clusters (never more than distinct titles); titles with no usable word all
    land in one cluster, the one nearest the origin.
    """
    titles = np.asarray(titles, dtype=str)
    distinct = np.unique(titles).size
    k = max(1, min(n_categories, distinct))
    how = {"method": "tfidf(words, colour/size words removed) -> truncated_svd -> l2 -> kmeans",
           "n_categories": k, "svd_dim": SVD_DIM, "seed": seed}
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=_WORD, sublinear_tf=True,
                                 min_df=2 if titles.size >= 50 else 1, stop_words=IGNORED_WORDS)
    try:
        tfidf = vectorizer.fit_transform(titles)
    except ValueError:  # no usable word at all (empty or tiny catalog)
        return np.zeros(titles.size, dtype=np.int64), how | {"sizes": [int(titles.size)], "top_words": [[]]}
    dim = min(SVD_DIM, tfidf.shape[1] - 1, titles.size - 1)
    if dim >= 1:
        points = normalize(TruncatedSVD(dim, algorithm="randomized", random_state=seed).fit_transform(tfidf))
    else:
        points = normalize(tfidf.toarray())
    k = min(k, np.unique(points.round(6), axis=0).shape[0])  # no more clusters than distinct points
    how["n_categories"] = k
    labels = KMeans(k, n_init=4, random_state=seed).fit_predict(points).astype(np.int64)
    words = vectorizer.get_feature_names_out()
    top_words = []
    for c in range(k):
        weight = np.asarray(tfidf[labels == c].sum(axis=0)).ravel()
        order = np.lexsort((words, -weight))[:5]
        top_words.append([str(words[i]) for i in order if weight[i] > 0])
    sizes = np.bincount(labels, minlength=k).tolist()
    return labels, how | {"sizes": sizes, "top_words": top_words}
