"""Derived item categories for logs that have none (UCI Online Retail has only a product name).

Categories feed intra-list diversity in offline evaluation and, later, the "at most 3 of one category"
guardrail, so they should follow product type (candles, bags, cards), not colour. Each cluster is named by
its most distinctive title words (``category_names``: "christmas decorations", "lunch bag"), so what the
catalog, the origin's answers and its explanations show is readable. The recipe: TF-IDF over
the lower-cased words of each item's description (words of two letters or more, seen in at least two
items, sub-linear term frequency) with colour and size words removed, a seeded TruncatedSVD to 64
dimensions, L2-normalised rows, then a seeded KMeans. Everything is seeded, so the same titles always
give the same categories.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
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


NAME_WORDS = 2


def category_names(titles: np.ndarray, labels: np.ndarray, words: int = NAME_WORDS) -> np.ndarray:
    """str per category index 0..max(labels): its ``words`` most distinctive title words, most distinctive
    first, distinct across categories (a clash takes the next word; a category without usable words is
    "other" + its index), in the order they usually take in those titles ("birthday card", not "card
    birthday").

    A word's distinctiveness for category c is p_c * log(p_c / p), where p_c is the share of c's titles
    containing it and p its share over all titles (a word in most of c's titles and rare elsewhere wins);
    colour, size and filler words are left out as for the clustering."""
    titles = np.asarray(titles, dtype=str)
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max(initial=-1)) + 1
    vectorizer = CountVectorizer(lowercase=True, token_pattern=_WORD, stop_words=IGNORED_WORDS, binary=True)
    try:
        present = vectorizer.fit_transform(titles).tocsc()
    except ValueError:  # no usable word at all
        return np.array([f"other {c}" for c in range(k)])
    vocab = vectorizer.get_feature_names_out()
    overall = np.asarray(present.sum(axis=0)).ravel() / max(titles.size, 1)
    ranked: list[list[str]] = []
    for c in range(k):
        mine = labels == c
        share = np.asarray(present[mine].sum(axis=0)).ravel() / max(int(mine.sum()), 1)
        score = np.where(share > 0, share * np.log(np.maximum(share, 1e-12) / np.maximum(overall, 1e-12)), -np.inf)
        order = np.lexsort((vocab, -score))
        ranked.append([str(vocab[i]) for i in order if np.isfinite(score[i]) and score[i] > 0])
    names: list[str] = []
    used: set[str] = set()
    for c, candidates in enumerate(ranked):
        in_order = _title_order(titles[labels == c])
        picked = candidates[:words]
        name = in_order(picked) if picked else f"other {c}"
        extra = words
        while name in used and extra < len(candidates):
            picked = candidates[:words - 1] + [candidates[extra]]
            name, extra = in_order(picked), extra + 1
        if name in used:
            name = f"{name} {c}"
        used.add(name)
        names.append(name)
    return np.array(names)


def _title_order(titles: np.ndarray):
    """A function joining words in their mean relative position within ``titles`` (ties: given order)."""
    tokens = [re.findall(_WORD, t.lower()) for t in titles.tolist()]

    def join(picked: list[str]) -> str:
        def place(word: str) -> float:
            spots = [toks.index(word) / max(len(toks), 1) for toks in tokens if word in toks]
            return float(np.mean(spots)) if spots else 1.0

        return " ".join(sorted(picked, key=place))

    return join
