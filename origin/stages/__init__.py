"""The origin's request path, one small stage per module (product-mixer style).

decode -> validate -> profile -> content_source -> covisitation_source -> ann_source -> popular_source
-> guardrails -> in_stock -> already_purchased -> rank -> mmr -> select [-> reason] -> encode. Each stage's ``name`` is its metrics label;
``origin.recommend`` declares the order.
"""
