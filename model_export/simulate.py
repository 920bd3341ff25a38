"""Session simulation for the synthetic world: slates shown, true click probabilities, clicks and events.

The true click model is what the edge scorer must rediscover from observable features, so it mixes:
user-item taste (latent dot product), item appeal (drives popularity), price relative to the category,
channel/device/hour effects, age-restricted items suppressed on email/sms, cheap groceries favoured at the
till (pos), and in-session intent (similarity to items clicked earlier in the session). Steps advance
for all live sessions at once, so the loop runs ``max_steps`` times, not once per session.
"""

from __future__ import annotations

import numpy as np

from strata.model_export import vocabulary as vocab
from strata.model_export.world_types import (
    EPOCH_START_MS,
    LATENT_DIM,
    Catalog,
    Sessions,
    Users,
    WorldConfig,
    random_uuids,
)
from strata.shared.contracts.api import EVENT_TYPES

# P(device | channel); rows follow CHANNELS, columns follow DEVICES (desktop, mobile, tablet, other).
DEVICE_GIVEN_CHANNEL = np.array([
    [0.55, 0.30, 0.12, 0.03],  # web
    [0.00, 0.80, 0.20, 0.00],  # app
    [0.40, 0.50, 0.10, 0.00],  # email
    [0.00, 0.95, 0.03, 0.02],  # sms
    [0.00, 0.00, 0.10, 0.90],  # pos (till screens and kiosks)
])
CHANNEL_EFFECT = np.array([0.0, 0.3, -0.4, -0.6, -0.2])
DEVICE_EFFECT = np.array([0.0, -0.1, 0.1, -0.3])
AGE_PENALTY = np.array([0.0, -0.3, -1.5, -1.5, 0.2])  # per channel, for age-restricted items
BASE_LOGIT = -3.8
W_TASTE, W_APPEAL, W_INTENT, W_PRICE = 1.8, 0.6, 2.2, -0.6
INTENT_DECAY = 0.7
PURCHASE_GIVEN_CART = 0.5
_T = {name: i for i, name in enumerate(EVENT_TYPES)}


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    return np.minimum((rng.random((probs.shape[0], 1)) > cum).sum(axis=1), probs.shape[1] - 1)


def true_logit(cat: Catalog, taste: np.ndarray, intent: np.ndarray, items: np.ndarray, channel: np.ndarray,
               device: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """Ground-truth click logit for a [sessions, slate] block of items."""
    mu = np.array([c.log_price for c in vocab.CATEGORIES])
    lat = cat.latent[items]  # [n, s, D]
    taste_term = np.einsum("nd,nsd->ns", taste, lat)
    norm = np.linalg.norm(intent, axis=1, keepdims=True)
    has_intent = norm > 0
    intent_cos = np.einsum("nd,nsd->ns", intent / np.where(has_intent, norm, 1.0), lat)
    rel_price = np.log(cat.price[items]) - mu[cat.category[items]]
    cheap_at_till = (channel[:, None] == 4) & (mu[cat.category[items]] < 1.5)
    ctx = CHANNEL_EFFECT[channel] + DEVICE_EFFECT[device] + 0.35 * np.cos(2 * np.pi * (hour - 20) / 24)
    return (BASE_LOGIT + W_TASTE * taste_term + W_APPEAL * cat.appeal[items] + W_INTENT * intent_cos * has_intent
            + W_PRICE * rel_price + ctx[:, None] + AGE_PENALTY[channel][:, None] * cat.age_restricted[items]
            + 0.6 * cheap_at_till)


def _session_columns(rng: np.random.Generator, cfg: WorldConfig, users: Users) -> dict[str, np.ndarray]:
    activity = rng.lognormal(0.0, 0.8, cfg.n_users)
    user = rng.choice(cfg.n_users, size=cfg.n_sessions, p=activity / activity.sum())
    channel = _sample_rows(rng, users.channel_pref[user])
    device = _sample_rows(rng, DEVICE_GIVEN_CHANNEL[channel])
    diurnal = 1.0 + 0.8 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
    hour = rng.choice(24, size=cfg.n_sessions, p=diurnal / diurnal.sum())
    day = rng.integers(0, cfg.days, cfg.n_sessions)
    start = EPOCH_START_MS + day * 86_400_000 + hour * 3_600_000 + rng.integers(0, 3_600_000, cfg.n_sessions)
    n_steps = np.minimum(rng.geometric(0.2, cfg.n_sessions), cfg.max_steps)
    order = np.argsort(start, kind="stable")  # session index == time order (held-out split by time)
    cols = {"user": user, "channel": channel, "device": device, "hour": hour, "start_ms": start,
            "n_steps": n_steps}
    return {k: v[order].astype(np.int64) for k, v in cols.items()}


def simulate_sessions(rng: np.random.Generator, cfg: WorldConfig, cat: Catalog, users: Users) -> Sessions:
    s = _session_columns(rng, cfg, users)
    n_items, size = len(cat), cfg.slate_size
    exposure = np.exp(1.2 * cat.appeal.astype(np.float64))
    exposure /= exposure.sum()
    by_cat = np.argsort(cat.category, kind="stable")
    counts = np.bincount(cat.category, minlength=len(vocab.CATEGORIES))
    starts = np.cumsum(counts) - counts
    intent = np.zeros((cfg.n_sessions, LATENT_DIM), dtype=np.float32)
    focus = users.favourite[s["user"]].copy()  # category the session is browsing
    clock = s["start_ms"].copy()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("sess", "step", "item", "ts", "p", "click")}
    for step in range(cfg.max_steps):
        live = np.flatnonzero(s["n_steps"] > step)
        if live.size == 0:
            break
        n = live.size
        source = rng.random((n, size))
        popular = rng.choice(n_items, size=(n, size), p=exposure)
        cats = np.broadcast_to(focus[live][:, None], (n, size))
        in_focus = by_cat[starts[cats] + (rng.random((n, size)) * counts[cats]).astype(np.int64)]
        anything = rng.integers(0, n_items, (n, size))
        items = np.where(source < 0.45, popular, np.where(source < 0.8, in_focus, anything))
        logit = true_logit(cat, users.taste[s["user"][live]], intent[live], items, s["channel"][live],
                           s["device"][live], s["hour"][live])
        p = 1.0 / (1.0 + np.exp(-logit))
        clicked = rng.random((n, size)) < p
        intent[live] = INTENT_DECAY * intent[live] + np.einsum("ns,nsd->nd", clicked, cat.latent[items])
        any_click = clicked.any(axis=1)
        first = items[np.arange(n), clicked.argmax(axis=1)]
        focus[live[any_click]] = cat.category[first[any_click]]
        parts["sess"].append(np.repeat(live, size))
        parts["step"].append(np.full(n * size, step))
        parts["item"].append(items.ravel())
        parts["ts"].append(np.repeat(clock[live], size))
        parts["p"].append(p.ravel())
        parts["click"].append(clicked.ravel())
        clock[live] += 20_000 + rng.exponential(60_000.0, n).astype(np.int64)
    imp = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.lexsort((np.tile(np.arange(size), imp["sess"].size // size), imp["step"], imp["sess"]))
    imp = {k: v[order] for k, v in imp.items()}
    pos = np.tile(np.arange(size), imp["sess"].size // size)
    slate = np.arange(imp["sess"].size) // size
    events = _events(rng, cat, users.taste[s["user"][imp["sess"]]], imp, pos, slate)
    n_slates = int(slate[-1]) + 1 if slate.size else 0
    slate_uuid = random_uuids(rng, n_slates)
    ev_uuid = random_uuids(rng, events["type"].size)
    session_id = np.char.add("S-", np.char.zfill(np.arange(cfg.n_sessions).astype(str), 7))
    return Sessions(
        session_id=session_id, user=s["user"], channel=s["channel"], device=s["device"],
        start_ms=s["start_ms"], hour=s["hour"], imp_session=imp["sess"], imp_step=imp["step"], imp_pos=pos,
        imp_item=imp["item"], imp_ts_ms=imp["ts"], imp_p_true=imp["p"].astype(np.float32),
        imp_clicked=imp["click"], slate_uuid=slate_uuid, imp_slate=slate, ev_type=events["type"],
        ev_session=events["sess"], ev_item=events["item"], ev_ts_ms=events["ts"], ev_slate=events["slate"],
        ev_uuid=ev_uuid,
    )


def cart_probability(cat: Catalog, taste: np.ndarray, items: np.ndarray) -> np.ndarray:
    """P(add to cart | clicked) for rows of (user taste, item): taste fit up, relative price down. Half of
    the carts become purchases (``PURCHASE_GIVEN_CART``)."""
    mu = np.array([c.log_price for c in vocab.CATEGORIES])
    fit = np.einsum("nd,nd->n", taste, cat.latent[items])
    return 1.0 / (1.0 + np.exp(1.2 - 1.5 * fit + 0.4 * (np.log(cat.price[items]) - mu[cat.category[items]])))


def _events(rng: np.random.Generator, cat: Catalog, taste: np.ndarray, imp: dict[str, np.ndarray],
            pos: np.ndarray, slate: np.ndarray) -> dict[str, np.ndarray]:
    """Click -> product view -> maybe cart -> maybe purchase, each a little later than the last.

    Clicks within a slate are ordered by position, so event order matches the order training uses
    for session vectors (step, then position). Every step's events end before the next slate.
    """
    idx = np.flatnonzero(imp["click"])
    item = imp["item"][idx]
    click_ts = imp["ts"][idx] + 1_000 + pos[idx] * 1_500 + rng.integers(0, 1_000, idx.size)
    view_ts = click_ts + 300 + rng.integers(0, 500, idx.size)
    cart = rng.random(idx.size) < cart_probability(cat, taste[idx], item)
    buy = cart & (rng.random(idx.size) < PURCHASE_GIVEN_CART)
    cart_ts = view_ts + 2_000 + rng.integers(0, 6_000, idx.size)
    buy_ts = cart_ts + 2_000 + rng.integers(0, 3_000, idx.size)
    chunks = [(_T["click"], np.ones_like(cart), click_ts), (_T["view"], np.ones_like(cart), view_ts),
              (_T["add_to_cart"], cart, cart_ts), (_T["purchase"], buy, buy_ts)]
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("type", "sess", "item", "ts", "slate")}
    for etype, keep, ts in chunks:
        out["type"].append(np.full(int(keep.sum()), etype))
        out["sess"].append(imp["sess"][idx][keep])
        out["item"].append(item[keep])
        out["ts"].append(ts[keep])
        out["slate"].append(slate[idx][keep])
    ev = {k: np.concatenate(v).astype(np.int64) for k, v in out.items()}
    order = np.lexsort((ev["ts"], ev["sess"]))
    return {k: v[order] for k, v in ev.items()}
