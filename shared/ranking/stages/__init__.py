"""The ranking kernel: the stages every tier that ranks an edge-scorer bundle runs, one small class per module.

    session (consent-gated) -> candidates -> guardrails -> [counts: the tier's] -> posterior -> select
    -> fill -> confidence -> route -> escalate -> [encode: ``shared.serving.encode``]

The edge composes them with its PoP caches (``edge.recommend``); tier 2 with a store-direct session,
ANN candidates and counts read from the store (``streaming.tier2.handler``). Same request and same state
give the same ranking in both. Every stage reads only what earlier stages wrote into the typed
``RankCtx`` (``ctx``).
"""
