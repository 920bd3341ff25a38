"""The edge's own stages: its PoP caches and counts. The rest of its request path is the ranking kernel
(``shared.ranking.stages``); ``edge.recommend`` declares the order. Each stage's ``name`` is its metrics
label (``strata_edge_stage_seconds{stage=...}``).
"""
