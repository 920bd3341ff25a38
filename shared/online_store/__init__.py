"""The online store (Redis / Valkey) as every tier reads it: one client factory (``client.connect``) and the
only decoders of what the stream processor writes (``codecs``). The key layout is ``shared.keys``.

Each tier keeps its own narrow reader class (the edge's ``SessionStore``, tier 2's ``Tier2Store``, the
origin's ``ProfileStore``) on top of these, with exactly the calls it needs.
"""
