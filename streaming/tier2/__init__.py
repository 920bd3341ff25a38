"""Tier 2's scorer: ``POST /v1/recommend`` on the streaming service, with the edge's contract.

    decode -> validate -> session -> candidates -> guardrails -> counts -> rank -> select -> encode

The freshest session vector straight from the store (no PoP cache), ANN candidates from the bundle's
item vectors in a ``shared.models.vector_index.VectorIndex`` (Qdrant Edge in-process by default) when the
request names none, then the same ONNX scorer, bandit and guardrails as the edge (``shared/``), with
the slot's click/impression counts read from the store for exactly these candidates. Store down: the
no-session ranking (the bundle's popular pool, the model's prior) with ``degraded=true``.
"""
