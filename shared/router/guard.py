"""Defence in depth: an upper tier's answer passes this tier's guardrails again before it is served or cached.

Items this tier's policy removes (banned items and categories, the age gate, unknown items under
``unknown_items: block``) are dropped, and so are items past the category cap (unless the upper tier said
it relaxed the cap: it had no other items); the answer is completed from this tier's own answer (already
through the same guardrails), so it keeps its length. An upper tier whose answer keeps nothing is a failed
escalation.
"""

from __future__ import annotations

from strata.shared.ranking.guardrails import DIVERSITY_RELAXED
from strata.shared.ranking.stages.ctx import RankCtx, Upstream

REMOVED_REASON = "upstream_items_removed"     # route_reasons of an answer the recheck changed


def recheck(ctx: RankCtx, up: Upstream) -> tuple[Upstream | None, int]:
    """(the answer to serve, items removed); (None, n) when nothing of the upper tier's answer is left."""
    items = up.body["items"]
    ids = [it["item_id"] for it in items]
    model = ctx.model
    guard = model.guard
    age = ctx.req.context.age_verified
    rows, n_unknown = model.ranker.lookup(ids)
    keep = list(range(len(ids)))
    if n_unknown:
        res = guard.filter(rows, age, ids)
        if res.removed.shape[0]:
            keep = res.kept.tolist()
        cats = guard.categories_of(rows).tolist()
    else:                               # the common case: ten known rows, read as a list (no NumPy call per check)
        known = rows.tolist()
        cats = guard.categories_at(known)
        if guard.removes[age]:
            allowed = guard.allowed_at(known, age)
            if not all(allowed):
                keep = [i for i, ok in enumerate(allowed) if ok]
    relaxed = DIVERSITY_RELAXED in (up.body.get("route_reasons") or ())
    diversity = model.diversity
    if not relaxed and not diversity.satisfied([cats[i] for i in keep]):
        picked, _ = diversity.select(keep, cats, len(keep))
        keep = picked
    removed = len(ids) - len(keep)
    if not removed:
        return up, 0
    if not keep:
        return None, removed
    out = [items[i] for i in keep]
    out_cats = [cats[i] for i in keep]
    need = len(ids)
    if len(out) < need:                 # complete it from this tier's own answer
        taken = {it["item_id"] for it in out}
        own = [it for it in ctx.items if it["item_id"] not in taken]
        if own:
            more = need - len(out)
            if relaxed:
                out.extend(own[:more])
            else:
                own_rows, _ = model.ranker.lookup([it["item_id"] for it in own])
                base = len(out)
                order, _ = diversity.select(list(range(base, base + len(own))),
                                            out_cats + guard.categories_of(own_rows).tolist(), more, prior=out_cats)
                out.extend(own[j - base] for j in order)
    body = dict(up.body)
    body["items"] = out
    body["route_reasons"] = [*(up.body.get("route_reasons") or ()), REMOVED_REASON]
    return Upstream(up.tier, body, up.degraded), removed

