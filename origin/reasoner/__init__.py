"""Reasoners behind one interface: the grounded template reasoner (always available) and vLLM through its
OpenAI-compatible API, checked against the catalog and falling back to the template."""
