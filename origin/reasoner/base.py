"""The ``Reasoner`` interface and the facts a reasoner may use (nothing else reaches it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ExplainInput:
    items: list[dict]                          # catalog facts per item: item_id, title, category, price
    query: str | None = None                   # the user's text, already redacted
    recent_categories: tuple[str, ...] = ()    # from the profile (empty without consent)
    channel: str = "web"
    sources: list[list[str]] = field(default_factory=list)   # which candidate sources found each item
    categories: frozenset[str] = frozenset()   # every category name of the catalog (grounding)
    vocabulary: frozenset[str] = frozenset()   # every title word of the catalog (grounding)


@dataclass(frozen=True, slots=True)
class Explanation:
    items: list[dict]            # [{"item_id", "reason"}] in the input's order
    reasoner: str                # who wrote them: "template" or "vllm"
    fallback: str | None = None  # why the configured reasoner did not answer (None: it did)


class Reasoner(Protocol):
    name: str
    blocking: bool               # True: ``explain`` awaits I/O; False: ``explain_now`` answers at once

    def explain_now(self, inp: ExplainInput) -> Explanation: ...

    async def explain(self, inp: ExplainInput) -> Explanation: ...

    async def close(self) -> None: ...
