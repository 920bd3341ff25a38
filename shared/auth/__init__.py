"""Who may call the tiers: API keys per tenant with scopes (``keys``), the check every front door runs before a
request reaches its handler (``gate``), rate limits (``limits``) and signed impression ids (``impressions``).

Every tier uses the same pieces, built from the ``auth`` and ``rate_limit`` config sections; with
``auth.enabled: false`` (the default) the gate lets every request through as before and says so once at start.
"""
