"""The origin's request path, one small stage per module (product-mixer style).

decode -> validate -> profile [-> given_items] -> content_source -> covisitation_source -> two_tower_source
-> ann_source -> popular_source -> guardrails -> in_stock -> already_purchased -> rank -> mmr -> select
[-> reason] -> encode (the bracketed stages: explain only). Each stage's ``name`` is its metrics label;
``origin.recommend`` declares the order.
"""
