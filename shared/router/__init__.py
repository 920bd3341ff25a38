"""The router: escalates a request to an upper tier over pooled keep-alive HTTP/1.1 (``router.Router``, the
kernel's ``UpstreamClient``), with power-of-two-choices endpoints, a breaker per endpoint, an admission window
for the escalation budget and this tier's guardrails applied again to the answer. See docs/router.md."""
