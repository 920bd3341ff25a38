"""Who may wait on the LLM: at most ``max_concurrent`` explains at once (the rest get the template at once,
fallback ``busy``), and per tenant at most ``tokens_per_minute`` LLM tokens (the rest get the template,
fallback ``tenant_over_budget``), so one tenant cannot starve the others of the global budget.

Tokens are reserved when the call is admitted, at an upper-bound estimate (the prompt's characters / 4 plus the
completion's ``max_tokens``), not spent after the answer: admitted concurrent calls cannot overrun a budget
together. (The reasoner's own global budget still applies behind this one.)
"""

from __future__ import annotations

from collections import Counter

from strata.origin.reasoner.base import ExplainInput
from strata.origin.reasoner.budget import TokenBudget

PROMPT_OVERHEAD_CHARS = 1200          # the system prompt and the JSON framing around the facts
MAX_TENANTS = 10_000


def token_estimate(inp: ExplainInput, max_tokens: int) -> int:
    chars = PROMPT_OVERHEAD_CHARS + sum(len(f["title"]) + len(f["category"]) + 48 for f in inp.items)
    chars += len(inp.query or "") + sum(len(c) + 4 for c in inp.recent_categories)
    return chars // 4 + max_tokens


class ExplainAdmission:
    def __init__(self, max_concurrent: int, tokens_per_minute: int, max_tokens: int) -> None:
        self.max_concurrent = max_concurrent
        self.tokens_per_minute = tokens_per_minute
        self.max_tokens = max_tokens
        self.in_flight = 0
        self.refused: Counter[str] = Counter()      # fallback reason -> explains answered by the template
        self._budgets: dict[str, TokenBudget] = {}

    def admit(self, tenant: str, inp: ExplainInput) -> str | None:
        """None: go ahead (release when done); else the fallback reason to answer with at once."""
        if self.in_flight >= self.max_concurrent:
            self.refused["busy"] += 1
            return "busy"
        if self.tokens_per_minute > 0:
            budget = self._budgets.get(tenant)
            if budget is None:
                if len(self._budgets) >= MAX_TENANTS:
                    self._budgets.clear()
                budget = self._budgets[tenant] = TokenBudget(self.tokens_per_minute, 1 << 62)
            tokens = token_estimate(inp, self.max_tokens)
            if not budget.allows(tokens):
                self.refused["tenant_over_budget"] += 1
                return "tenant_over_budget"
            budget.spend(tokens)
        self.in_flight += 1
        return None

    def release(self) -> None:
        self.in_flight -= 1
