"""The session-vector update rule: ONE pure function used by the stream processor, tests and any replay.

A session's state is an accumulator ``acc`` (float64 [EMBED_DIM]) of event-type-weighted item vectors,
exponentially decayed in event time with half-life ``half_life_s``, plus ``ref_ms``, the event time the
accumulator is decayed to. An event at ``ts >= ref_ms`` decays the accumulator to ``ts`` and adds its
weighted item vector; a late event (``ts < ref_ms``) adds its contribution decayed to ``ref_ms``. The
vector the edge reads is ``acc`` L2-normalised, as float32 (``shared.keys``: field ``vec``; read back by
``shared.online_store.codecs.decode_session``).

Applied in the log's per-session order, the result depends only on the events and the rule, never on
batching or timing: replaying the same events gives bit-identical bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from strata.shared.contracts.api import Event
from strata.shared.ranking.features import EMBED_DIM


def _default_weights() -> dict[str, float]:
    return {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0}


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class SessionRule:
    """How events move a session vector (config section ``streaming.session``)."""

    half_life_s: float = Field(default=600.0, gt=0,
                               description="event-time half-life of an event's contribution")
    weights: dict[str, float] = Field(default_factory=_default_weights,
                                      description="event type -> weight; types not listed do not move the vector")

    def weight(self, etype: str) -> float:
        return self.weights.get(etype, 0.0)


class SessionAcc(NamedTuple):
    acc: np.ndarray      # float64 [EMBED_DIM]
    ref_ms: int


def apply_event(state: SessionAcc | None, item_vec: np.ndarray, weight: float, ts_ms: int,
                rule: SessionRule) -> SessionAcc:
    """The state after one event with item vector ``item_vec`` and weight ``weight`` at ``ts_ms``."""
    contrib = np.asarray(item_vec, dtype=np.float64) * float(weight)
    if state is None:
        return SessionAcc(contrib, ts_ms)
    hl_ms = rule.half_life_s * 1000.0
    if ts_ms >= state.ref_ms:
        return SessionAcc(state.acc * 0.5 ** ((ts_ms - state.ref_ms) / hl_ms) + contrib, ts_ms)
    return SessionAcc(state.acc + contrib * 0.5 ** ((state.ref_ms - ts_ms) / hl_ms), state.ref_ms)


def session_vec(state: SessionAcc | None) -> np.ndarray | None:
    """The vector the edge reads: float32 unit vector, None when there is no direction yet."""
    if state is None:
        return None
    vecs, ok = session_vecs(state.acc[None, :])
    return vecs[0] if ok[0] else None


def session_vecs(accs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``session_vec`` of many accumulators at once (float64 [n, EMBED_DIM]): (float32 unit vectors, ok mask).

    The squared norm is summed column by column in a fixed order, so row i gives the same bits whether it
    is computed alone or in a batch of any size (a numpy reduction may reorder its additions by shape)."""
    accs = np.asarray(accs, dtype=np.float64)
    sq = accs[:, 0] * accs[:, 0]
    for j in range(1, accs.shape[1]):
        sq = sq + accs[:, j] * accs[:, j]
    norms = np.sqrt(sq)
    ok = (norms > 0) & np.isfinite(norms)
    safe = np.where(ok, norms, 1.0)
    return (accs / safe[:, None]).astype(np.float32), ok


# The processor's own state of a session, one hash field ``st`` (fewer fields: each costs the store a few
# thousand instructions per write): ref_ms int64, events applied uint32, ttl_at int64 (unix ms the key's expiry
# was last set to), then the accumulator as float64 [EMBED_DIM]; little-endian.
STATE_HEAD = struct.Struct("<qIq")
STATE_BYTES = STATE_HEAD.size + EMBED_DIM * 8


class StoredState(NamedTuple):
    state: SessionAcc | None
    events: int
    ttl_at: int


def encode_state(acc: bytes | np.ndarray, ref_ms: int, events: int, ttl_at: int) -> bytes:
    """The ``st`` field; ``acc`` as float64 little-endian bytes (or an array)."""
    raw = acc if isinstance(acc, bytes) else np.asarray(acc, dtype="<f8").tobytes()
    return STATE_HEAD.pack(ref_ms, events, ttl_at) + raw


STATE_DTYPE = np.dtype([("ref_ms", "<i8"), ("events", "<u4"), ("ttl_at", "<i8"), ("acc", "<f8", (EMBED_DIM,))])
assert STATE_DTYPE.itemsize == STATE_BYTES


def decode_states(raws: list[bytes | None]) -> list[StoredState]:
    """``decode_state`` of many fields at once (one numpy view over all of them; same results)."""
    out = [StoredState(None, 0, 0)] * len(raws)
    good = [i for i, raw in enumerate(raws) if raw is not None and len(raw) == STATE_BYTES]
    if not good:
        return out
    # mypy cannot narrow raws[i] through ``good`` (None is filtered out there)
    arr = np.frombuffer(b"".join([raws[i] for i in good]), dtype=STATE_DTYPE)   # type: ignore[misc]
    accs = arr["acc"]
    for j, (i, ref_ms, events, ttl_at) in enumerate(zip(good, arr["ref_ms"].tolist(), arr["events"].tolist(),
                                                          arr["ttl_at"].tolist(), strict=True)):
        out[i] = StoredState(SessionAcc(accs[j], ref_ms), events, ttl_at)
    return out


def decode_state(raw: bytes | None) -> StoredState:
    """The ``st`` field -> (state or None, events, ttl_at); missing or the wrong size (another dimension) -> empty."""
    if raw is None or len(raw) != STATE_BYTES:
        return StoredState(None, 0, 0)
    ref_ms, events, ttl_at = STATE_HEAD.unpack_from(raw)
    # read-only view: rules never write in place
    return StoredState(SessionAcc(np.frombuffer(raw, dtype="<f8", offset=STATE_HEAD.size), ref_ms), events, ttl_at)


def replay_session(events: Iterable[Event], item_vector: Callable[[str], np.ndarray | None],
                   rule: SessionRule) -> SessionAcc | None:
    """The state after ``events`` (one session, log order, duplicates already removed): the reference the
    processor's writes and the training feature (``model_export.dataset``) are tested against."""
    state = None
    for ev in events:
        w = rule.weight(ev.type)
        vec = item_vector(ev.item_id) if ev.item_id is not None and w != 0.0 else None
        if vec is not None:
            state = apply_event(state, vec, w, ev.ts_ms, rule)
    return state


MAX_RECENT = 30             # distinct items a reader takes
RECENT_BYTES = 1024         # the stored field's cap (whole entries)
RECENT_SEP = b"\x1f"


def push_recent(old: bytes, new_in_log_order: list[str], limit: int = RECENT_BYTES) -> bytes:
    """A session's stored ``recent`` field after ``new_in_log_order``: item ids (UTF-8) joined by \\x1f, most
    recent (in log order) first, cut after the last whole entry within ``limit`` bytes. Repeats are kept, so
    the write is a few bytes operations per session and batch; readers take each item once with
    ``recent_items``. Items whose id contains \\x1f are not recorded."""
    if len(new_in_log_order) == 1:          # the usual case: one new item per session and batch
        item = new_in_log_order[0]
        new = b"" if "\x1f" in item else item.encode()
    else:
        new = RECENT_SEP.join([i.encode() for i in reversed(new_in_log_order) if "\x1f" not in i])
    out = new + RECENT_SEP + old if new and old else new or old
    if len(out) > limit:
        cut = out.rfind(RECENT_SEP, 0, limit + 1)      # an id is at most 512 bytes: the first entry fits
        if cut > 0:
            out = out[:cut]
    return out


def replay_recent(events: Iterable[Event], item_known: Callable[[str], bool], rule: SessionRule) -> bytes:
    """The ``recent`` field after ``events`` (one session, log order, duplicates removed): the items of the
    events that move the vector (weight != 0, item in the catalog), as ``push_recent`` keeps them. The
    reference the processor's writes are tested against."""
    return push_recent(b"", [ev.item_id for ev in events
                             if ev.item_id is not None and rule.weight(ev.type) != 0.0 and item_known(ev.item_id)])


def recent_items(raw: bytes | str | None, limit: int = MAX_RECENT) -> list[str]:
    """The stored ``recent`` field -> at most ``limit`` distinct item ids, most recent first (what the origin's
    session tower reads); missing -> []; bytes that are not UTF-8 are replaced, never raised on."""
    if not raw:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return list(dict.fromkeys(text.split("\x1f")))[:limit]
