"""The grounded template reasoner: every sentence is assembled from catalog facts and the profile, so it
can never state a fact that is not there. Always available; what runs when no LLM is configured and
whenever the LLM's answer is late, over budget or rejected."""

from __future__ import annotations

from strata.origin.catalog import words
from strata.origin.reasoner.base import ExplainInput, Explanation


def price_text(price: float) -> str:
    return f"{price:.2f}"


class TemplateReasoner:
    name = "template"
    blocking = False

    def explain_now(self, inp: ExplainInput, fallback: str | None = None) -> Explanation:
        qwords = set(words(inp.query)) if inp.query else set()
        out = []
        for i, f in enumerate(inp.items):
            sources = inp.sources[i] if i < len(inp.sources) else []
            item_words = set(words(f["title"])) | set(words(f["category"]))
            matched = sorted(qwords & item_words)
            if matched:
                why = f"it matches your search ({', '.join(matched)})"
            elif f["category"] in inp.recent_categories:
                why = f"you recently browsed {f['category']}"
            elif "content_source" in sources and inp.query:
                why = "it is close in meaning to your search"
            elif "covisitation_source" in sources:
                why = "shoppers often view it together with items like the ones you looked for"
            elif "ann_source" in sources:
                why = "it is close to what you looked at this session"
            elif "popular_source" in sources:
                why = f"it is popular on {inp.channel} right now"
            else:
                why = f"it is a pick from {f['category']}"
            out.append({"item_id": f["item_id"],
                        "reason": f"{f['title']} ({f['category']}, {price_text(f['price'])}): {why}."})
        return Explanation(out, self.name, fallback)

    async def explain(self, inp: ExplainInput) -> Explanation:
        return self.explain_now(inp)

    async def close(self) -> None:
        return None
