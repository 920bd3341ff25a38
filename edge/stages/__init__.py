"""The edge's request path, one small stage per module (product-mixer style).

exact_cache -> decode -> validate -> response_cache -> session -> candidates -> guardrails -> rank ->
select -> confidence -> escalate -> encode. Each stage's ``name`` is its metrics label
(``strata_edge_stage_seconds{stage=...}``); ``edge.recommend`` declares the order.
"""
