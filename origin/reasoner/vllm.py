"""vLLM through its OpenAI-compatible chat API (httpx, pooled) with JSON-schema structured output.

The schema's ``item_id`` is an ``enum`` of the candidate ids and every object forbids extra keys, so the
server can only produce well-formed answers about these items; ``grounding.check_answer`` then checks
the facts. Around the call: a deadline (200 ms default; one retry on a refused connection while time
remains: the call has no side effect), a token budget per minute and per day, and a 5-minute cache of
accepted answers. Anything that goes wrong is counted by reason and answered by the template reasoner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict

import httpx

from strata.origin.reasoner.base import ExplainInput, Explanation
from strata.origin.reasoner.budget import TokenBudget
from strata.origin.reasoner.grounding import Rejected, check_answer
from strata.origin.reasoner.template import TemplateReasoner, price_text
from strata.shared.serving.trace import outgoing

logger = logging.getLogger(__name__)

SYSTEM = ("You explain product recommendations to a shopper. Use ONLY the facts given: each item's title, "
          "category and price, the shopper's search and recently browsed categories. Never invent a fact. "
          "Write one short reason (at most 25 words) per item. Answer in JSON.")


def answer_schema(ids: list[str]) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["items"], "properties": {
        "items": {"type": "array", "minItems": len(ids), "maxItems": len(ids), "items": {
            "type": "object", "additionalProperties": False, "required": ["item_id", "reason"],
            "properties": {"item_id": {"type": "string", "enum": ids},
                           "reason": {"type": "string", "minLength": 1, "maxLength": 200}}}}}}


def prompt(inp: ExplainInput) -> str:
    facts = {"items": [{"item_id": f["item_id"], "title": f["title"], "category": f["category"],
                        "price": price_text(f["price"])} for f in inp.items],
             "search": inp.query, "recent_categories": list(inp.recent_categories)}
    return json.dumps(facts, ensure_ascii=False)


def chat_completions_url(url: str) -> str:
    """The server's chat endpoint from its base URL, given with or without the OpenAI-style ``/v1``."""
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return base + "/v1/chat/completions"


class VllmReasoner:
    name = "vllm"
    blocking = True

    def __init__(self, url: str, model: str, *, deadline_s: float = 0.2, max_tokens: int = 256,
                 budget: TokenBudget | None = None, cache_ttl_s: float = 300.0, cache_size: int = 10_000,
                 fallback: TemplateReasoner | None = None) -> None:
        self.url = chat_completions_url(url)
        self.model = model
        self.deadline_s = deadline_s
        self.max_tokens = max_tokens
        self.budget = budget or TokenBudget(60_000, 5_000_000)
        self.cache_ttl_s = cache_ttl_s
        self.cache_size = cache_size
        self.fallback = fallback or TemplateReasoner()
        self.fallbacks: Counter[str] = Counter()     # reason -> answers the template gave instead
        self.answered = 0
        self.retries = 0
        self._cache: OrderedDict[tuple, tuple[float, list[dict]]] = OrderedDict()
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(deadline_s),
                                       limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    def explain_now(self, inp: ExplainInput) -> Explanation:
        return self._fall(inp, "not_awaited")

    def _fall(self, inp: ExplainInput, reason: str) -> Explanation:
        self.fallbacks[reason] += 1
        return self.fallback.explain_now(inp, fallback=reason)

    def _key(self, inp: ExplainInput) -> tuple:
        return (tuple(f["item_id"] for f in inp.items), tuple(f["price"] for f in inp.items),
                tuple(f["title"] for f in inp.items), inp.query, inp.recent_categories)

    async def explain(self, inp: ExplainInput) -> Explanation:
        key = self._key(inp)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.cache_ttl_s:
            return Explanation(hit[1], self.name)
        user = prompt(inp)
        estimate = (len(SYSTEM) + len(user)) // 4 + self.max_tokens
        if not self.budget.allows(estimate):
            return self._fall(inp, "over_budget")
        ids = [f["item_id"] for f in inp.items]
        body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0.0,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": "explanations", "schema": answer_schema(ids), "strict": True}}}
        try:
            async with asyncio.timeout(self.deadline_s):
                data = await self._post(body, now + self.deadline_s)
        except TimeoutError:
            return self._fall(inp, "timeout")
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("vLLM call failed: %s: %s", type(exc).__name__, exc)
            return self._fall(inp, "unavailable")
        usage = data.get("usage") or {}
        self.budget.spend(int(usage.get("total_tokens") or estimate))
        try:
            content = data["choices"][0]["message"]["content"]
            items = check_answer(content if isinstance(content, str) else "", inp)
        except (KeyError, IndexError, TypeError):
            return self._fall(inp, "invalid_json")
        except Rejected as rej:
            logger.info("vLLM answer rejected: %s", rej)
            return self._fall(inp, rej.reason)
        self.answered += 1
        self._cache[key] = (time.monotonic(), items)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return Explanation(items, self.name)

    async def _post(self, body: dict, deadline: float) -> dict:
        """POST once; retry a refused connection once after 10 ms while 50 ms of the deadline remain."""
        headers = outgoing()        # the request's X-Request-ID and a child traceparent, when it brought them
        try:
            r = await self._http.post(self.url, json=body, headers=headers)
        except httpx.ConnectError:
            if deadline - time.monotonic() < 0.05:
                raise
            self.retries += 1
            await asyncio.sleep(0.01)
            r = await self._http.post(self.url, json=body, headers=headers)
        r.raise_for_status()
        return r.json()

    async def close(self) -> None:
        await self._http.aclose()
