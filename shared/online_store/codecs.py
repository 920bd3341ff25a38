"""The only decoders of what the stream processor writes to the online store (key layout: ``shared.keys``).

- session hash: ``vec`` (float32 little-endian [EMBED_DIM], L2-normalised) and ``updated_ms``
  (``decode_session``, ``decode_vector``);
- bandit counts hash of a slot: ``c:<item>`` clicks, ``n:<item>`` impressions and ``e:<item>`` expected clicks
  in millionths (``parse_counts`` for a whole hash aligned to a bundle's rows, ``count_values`` for the fields
  of given items);
- profile hash: ``recent_categories`` (JSON list), ``cat:<name>`` affinity counters, ``stated`` (JSON
  {"categories", "brands"}); the purchases sorted set (``purchases``).
Malformed values are skipped or read as "nothing", never raised on: a bad write must not take a tier down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import orjson

from strata.shared.keys import EXPECTED_SCALE, clicks_field, expected_field, imps_field
from strata.shared.ranking.features import EMBED_DIM

logger = logging.getLogger(__name__)
VECTOR_BYTES = EMBED_DIM * 4
MAX_STATED = 10
MAX_CATEGORIES = 10


# -- session hash -------------------------------------------------------------------------------------------

class SessionState(NamedTuple):
    """A tuple of untracked objects, so the garbage collector never walks a session cache."""

    vec: np.ndarray | None       # float32 [EMBED_DIM], None if the store has no usable vector for the session
    updated_ms: int | None


def decode_vector(raw: bytes | None) -> np.ndarray | None:
    """A stored session vector, or None: missing, the wrong size (logged), non-finite, or all zero (a vector
    that points nowhere carries no taste; every tier reads it as "no session vector")."""
    if raw is None:
        return None
    if len(raw) != VECTOR_BYTES:
        logger.warning("session vector has %d bytes, expected %d; ignored", len(raw), VECTOR_BYTES)
        return None
    vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vec)) or not np.any(vec):
        return None
    return vec


def decode_session(vec_raw: bytes | None, updated_raw: bytes | str | None) -> SessionState:
    """``HMGET session vec updated_ms`` -> SessionState."""
    updated = None
    if updated_raw is not None:
        try:
            updated = int(updated_raw)
        except ValueError:
            updated = None
    return SessionState(decode_vector(vec_raw), updated)


# -- bandit counts hash -------------------------------------------------------------------------------------

_NONE = (0.0, 0.0, 0.0)


class SlotCounts:
    """One slot's counts aligned to a bundle's rows (+ the counts of ids the bundle does not know)."""

    __slots__ = ("clicks", "imps", "expected", "extra", "empty")

    def __init__(self, n_items: int, empty: bool = False) -> None:
        self.empty = empty          # no observations at all: rank on the prior alone
        self.clicks = np.zeros(n_items, dtype=np.float64)
        self.imps = np.zeros(n_items, dtype=np.float64)
        self.expected = np.zeros(n_items, dtype=np.float64)   # expected clicks (the scorer's p summed)
        self.extra: dict[str, tuple[float, float, float]] = {}   # counts for ids unknown to the bundle

    def of(self, rows: np.ndarray, n_unknown: int,
           ids: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(clicks, impressions, expected clicks) per row (``-1`` rows: by id from ``ids``, aligned to ``rows``);
        None when the slot has no observations at all."""
        if self.empty:
            return None
        if not n_unknown:
            return self.clicks[rows], self.imps[rows], self.expected[rows]
        known = rows >= 0
        known_rows = rows[known]
        n = rows.shape[0]
        clicks = np.zeros(n, dtype=np.float64)
        imps = np.zeros(n, dtype=np.float64)
        expected = np.zeros(n, dtype=np.float64)
        clicks[known] = self.clicks[known_rows]
        imps[known] = self.imps[known_rows]
        expected[known] = self.expected[known_rows]
        if self.extra and ids is not None:
            for pos in np.flatnonzero(~known).tolist():
                clicks[pos], imps[pos], expected[pos] = self.extra.get(ids[pos], _NONE)
        return clicks, imps, expected


class ItemCounts:
    """Counts read for named items (``HMGET`` of their ``c:``/``n:``/``e:`` fields), looked up by id; the same
    ``of`` as ``SlotCounts``, so a ranking stage does not care where its counts came from."""

    __slots__ = ("by_id", "item_ids")

    def __init__(self, item_ids: Sequence[str]) -> None:
        self.item_ids = item_ids        # the bundle's id per row
        self.by_id: dict[str, tuple[float, float, float]] = {}

    def add(self, ids: Sequence[str], raw: Sequence[bytes | str | None]) -> None:
        """``raw``: the ``HMGET`` answer of ``count_fields(ids)``."""
        vals = count_values(raw)
        n = len(ids)
        vals[2 * n:] /= EXPECTED_SCALE
        self.by_id.update(zip(ids, zip(vals[:n].tolist(), vals[n:2 * n].tolist(), vals[2 * n:].tolist(),
                                       strict=True), strict=True))

    def of(self, rows: np.ndarray, n_unknown: int,
           ids: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if not self.by_id:
            return None
        item_ids = self.item_ids
        names = ids if ids is not None else [item_ids[r] for r in rows.tolist()]
        get = self.by_id.get
        triples = np.array([get(i, _NONE) for i in names], dtype=np.float64).reshape(-1, 3)
        return triples[:, 0].copy(), triples[:, 1].copy(), triples[:, 2].copy()


class RowLookup(Protocol):
    def lookup(self, ids: list[str]) -> tuple[np.ndarray, int]: ...


def parse_counts(raw: Mapping[bytes, bytes] | Mapping[str, str], index: RowLookup | Mapping[str, int],
                 n_items: int) -> SlotCounts:
    """HGETALL result -> arrays, vectorised over fields. Malformed fields are skipped, never fatal.

    ``index`` maps item ids to rows: a compiled ``shared.ranking.row_map.ItemIndex`` (one C loop for all
    ids) or any mapping."""
    out = SlotCounts(n_items, empty=not raw)
    if not raw:
        return out
    fields = [f.encode("utf-8", "surrogatepass") if isinstance(f, str) else f for f in raw]
    try:       # the common case: every field name decodes; the per-field path handles the rest
        ids = [f[2:].decode() for f in fields]
    except UnicodeDecodeError:
        ids = [_decoded(f) for f in fields]
    kinds = np.array([f[:2] for f in fields], dtype="S2")
    is_click = kinds == b"c:"
    is_imps = kinds == b"n:"
    is_exp = kinds == b"e:"
    values = _floats(list(raw.values()))
    ok = (is_click | is_imps | is_exp) & np.isfinite(values) & (values >= 0)
    ok &= np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) > 0   # "": no id, or undecodable
    if isinstance(index, Mapping):
        rows = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        n_unknown = int(np.count_nonzero(rows < 0))
    else:
        rows, n_unknown = index.lookup(ids)
    known = ok & (rows >= 0)
    out.clicks[rows[known & is_click]] = values[known & is_click]
    out.imps[rows[known & is_imps]] = values[known & is_imps]
    out.expected[rows[known & is_exp]] = values[known & is_exp] / EXPECTED_SCALE
    if n_unknown:
        for i in np.flatnonzero(ok & (rows < 0)).tolist():
            c, n, e = out.extra.get(ids[i], _NONE)
            v = float(values[i])
            out.extra[ids[i]] = (v, n, e) if is_click[i] else (c, v, e) if is_imps[i] else (c, n, v / EXPECTED_SCALE)
    return out


def count_fields(ids: Sequence[str]) -> list[str]:
    """The fields ``ItemCounts.add`` reads: every id's clicks, then impressions, then expected clicks."""
    return [clicks_field(i) for i in ids] + [imps_field(i) for i in ids] + [expected_field(i) for i in ids]


def count_values(raw: Sequence[bytes | str | None]) -> np.ndarray:
    """``HMGET`` of count fields -> float64 per field; missing, malformed, negative, NaN or inf count 0."""
    vals = _floats([b"nan" if v is None else v for v in raw])
    vals[~(np.isfinite(vals) & (vals >= 0))] = 0.0
    return vals


def _decoded(field: bytes) -> str:
    try:
        return field[2:].decode()
    except UnicodeDecodeError:
        return ""


def _floats(vals: list[bytes | str]) -> np.ndarray:
    """Parse counter values; an unparsable value becomes NaN (and is then skipped)."""
    try:
        return np.array(vals, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.empty(len(vals), dtype=np.float64)
        for i, v in enumerate(vals):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = np.nan
        return out


# -- profile hash and purchases -----------------------------------------------------------------------------

def profile_categories(prof: Mapping[bytes, bytes], where: str = "profile") -> tuple[str, ...]:
    """The user's categories: the explicit ``recent_categories`` list when the profile has one, else the
    strongest ``cat:<name>`` affinity counters (``top_categories``)."""
    raw = prof.get(b"recent_categories")
    if raw is None:
        return top_categories(prof)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        logger.warning("%s has unreadable recent_categories; ignored", where)
        return ()
    return tuple(str(c) for c in parsed)[:MAX_CATEGORIES] if isinstance(parsed, list) else ()


def top_categories(prof: Mapping[bytes, bytes], n: int = MAX_CATEGORIES) -> tuple[str, ...]:
    """The user's categories by the stream processor's affinity counters (``cat:<name>``: views 1, carts 3,
    purchases 5, stated preferences 10), strongest first."""
    scored = []
    for k, v in prof.items():
        if k.startswith(b"cat:"):
            try:
                scored.append((-int(v), k[4:].decode("utf-8", "replace")))
            except ValueError:
                continue
    return tuple(name for _, name in sorted(scored)[:n])


def stated_preferences(raw: bytes | None) -> tuple[str, ...]:
    """The ``stated`` field: categories, then brands, each once, at most ``MAX_STATED``."""
    if raw is None:
        return ()
    try:
        obj = orjson.loads(raw)
        out = [str(x) for key in ("categories", "brands") for x in obj.get(key, [])]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        logger.warning("profile has unreadable stated preferences; ignored")
        return ()
    return tuple(dict.fromkeys(out))[:MAX_STATED]


def purchases(raw: Sequence[tuple[bytes | str, float]]) -> tuple[tuple[str, int], ...]:
    """``ZREVRANGE purchases ... WITHSCORES`` -> (item id, last purchase ts_ms), most recent first."""
    return tuple((b.decode() if isinstance(b, bytes) else str(b), int(ts)) for b, ts in raw)
