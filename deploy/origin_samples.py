"""What ``strata demo`` asks the origin: a cold-start answer for a user the system has never seen (a stated
need, no history) and an explanation of it, shown as one table."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from rich.table import Table

from strata.deploy.sample_traffic import DemoBundle

COLD_BODY = {"user_id": "demo-new-user", "session_id": "demo-new-session", "k": 5,
             "query": "organic bread for breakfast", "context": {"channel": "app"}}


@dataclass(frozen=True)
class OriginAnswers:
    recommend: dict
    explain: dict


def ask_origin(host: str, port: int) -> OriginAnswers:
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=10.0) as http:
        rec = http.post("/v1/recommend", json=COLD_BODY)
        rec.raise_for_status()
        ids = [it["item_id"] for it in rec.json()["items"]]
        ex = http.post("/v1/explain", json={**COLD_BODY, "item_ids": ids[:3]})
        ex.raise_for_status()
    return OriginAnswers(rec.json(), ex.json())


def origin_table(a: OriginAnswers, bundle: DemoBundle) -> Table:
    reasons = {it["item_id"]: it["reason"] for it in a.explain["items"]}
    t = Table(title=f"origin: cold start for a new user, query {COLD_BODY['query']!r}; explanations by the "
                    f"{a.explain['reasoner']} reasoner")
    for col in ("#", "item", "title", "sources", "explored", "reason"):
        t.add_column(col)
    for i, it in enumerate(a.recommend["items"], 1):
        title = bundle.titles.get(it["item_id"], "")
        t.add_row(str(i), it["item_id"], title, ",".join(s.removesuffix("_source") for s in it["sources"]),
                  "yes" if it["explored"] else "", reasons.get(it["item_id"], ""))
    return t
