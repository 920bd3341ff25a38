"""``VectorIndex``: nearest items by cosine with payload filters, behind one small interface (tiers 2 and 3).

Two backends, one contract (``tests/integration/test_vector_index_contract.py`` runs the same suite on both):
- ``edge`` (default): Qdrant Edge, Qdrant's engine in-process (``qdrant-edge-py``), one shard directory
  per process (a shard has exactly one opener; give every process its own copy);
- ``qdrant``: a Qdrant server through ``qdrant-client`` (``QdrantClient(url)`` in production; its local
  mode, ``QdrantClient(":memory:")`` or a path, runs the same code without a server).

Ids are the caller's strings (item ids, session ids ...). Qdrant wants integers or UUIDs, so a point's id
is ``uuid5(NAMESPACE, key)`` and the key itself travels in the payload under ``KEY_FIELD``.

Payload values are ints or strings. Flags are 0/1 integers, never bools: Qdrant Edge 0.9 turns a bool
filter value into an int, so a bool filter matches nothing (``shared/docs/EMBEDDED_ENGINES.md`` §2);
a bool in a payload or a filter is refused here with that reason rather than silently matching nothing.
Backend engines are imported lazily; a missing one names the extra to install.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from strata.shared.errors import ConfigError, InvalidField, ServiceUnavailable

KEY_FIELD = "key"
NAMESPACE = uuid.UUID("6f1c2a52-6a43-4d55-9b7e-2f0b2c1d9e11")
META_FILE = "index.json"
SHARD_DIR = "shard"
FieldType = Literal["integer", "keyword"]
PayloadValue = int | str
_EXTRA = "pip install 'strata[origin]'"


class IndexUnavailable(ServiceUnavailable):
    """The vector index failed (engine error, server down); callers fall back (e.g. to popular items)."""

    code = "index_unavailable"


@dataclass(frozen=True, slots=True)
class IndexPoint:
    key: str
    vector: np.ndarray | Sequence[float]
    payload: Mapping[str, PayloadValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    key: str
    score: float                       # cosine similarity to the query
    payload: dict[str, PayloadValue]   # the requested fields (KEY_FIELD removed)


@dataclass(frozen=True, slots=True)
class PayloadFilter:
    """All conditions must hold: ``equals`` field == value; ``any_of`` field in values; ``none_of`` field not
    in values (a point without the field passes ``none_of``); ``exclude_keys`` drops those points."""

    equals: Mapping[str, PayloadValue] = field(default_factory=dict)
    any_of: Mapping[str, Sequence[PayloadValue]] = field(default_factory=dict)
    none_of: Mapping[str, Sequence[PayloadValue]] = field(default_factory=dict)
    exclude_keys: Sequence[str] = ()

    def __post_init__(self) -> None:
        for key, value in self.equals.items():
            _check_value(value, f"filter.equals.{key}")
        for name, mapping in (("any_of", self.any_of), ("none_of", self.none_of)):
            for key, values in mapping.items():
                for v in values:
                    _check_value(v, f"filter.{name}.{key}")

    @property
    def empty(self) -> bool:
        return not (self.equals or self.any_of or self.none_of or self.exclude_keys)


def point_id(key: str) -> str:
    """The UUID a key is stored under (the same in every backend)."""
    return str(uuid.uuid5(NAMESPACE, key))


def _check_value(v: Any, where: str) -> None:
    if isinstance(v, bool):
        raise InvalidField("flags are 0/1 integers, not booleans (Qdrant Edge 0.9 bool filters match nothing)",
                           field=where)
    if not isinstance(v, int | str):
        raise InvalidField(f"payload values are integers or strings, got {type(v).__name__}", field=where)


class VectorIndex(ABC):
    """Cosine nearest neighbours with payload filters. Synchronous: calls take microseconds to milliseconds."""

    backend: str
    dim: int
    fields: Mapping[str, FieldType]

    def _vector(self, vector: Any, where: str) -> list[float]:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise InvalidField(f"must have {self.dim} dimensions, got {v.shape[0]}", field=where)
        if not np.all(np.isfinite(v)) or not np.any(v):
            raise InvalidField("must be finite and not all zero (cosine needs a direction)", field=where)
        return v.tolist()

    def _vectors(self, points: Sequence[IndexPoint]) -> list[list[float]]:
        """``_vector`` of every point, checked as one matrix (per point it was most of a 68k-point upsert)."""
        try:
            m = np.asarray([p.vector for p in points], dtype=np.float32)
        except ValueError:              # ragged: the per-point check names the bad one
            m = None
        if m is None or m.ndim != 2 or m.shape[1] != self.dim or not np.all(np.isfinite(m)) or not np.all(m.any(axis=1)):
            return [self._vector(p.vector, f"points[{i}].vector") for i, p in enumerate(points)]
        return m.tolist()

    def _payload(self, point: IndexPoint, i: int) -> dict[str, PayloadValue]:
        if not point.key or not isinstance(point.key, str):
            raise InvalidField("must be a non-empty string", field=f"points[{i}].key")
        payload = dict(point.payload)
        if KEY_FIELD in payload:
            raise InvalidField(f"'{KEY_FIELD}' is reserved for the point's key", field=f"points[{i}].payload")
        for k, v in payload.items():
            _check_value(v, f"points[{i}].payload.{k}")
        payload[KEY_FIELD] = point.key
        return payload

    @abstractmethod
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points (searchable as soon as this returns)."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Remove points; unknown keys are ignored."""

    @abstractmethod
    def search(self, vector: Any, limit: int, flt: PayloadFilter | None = None, *,
               with_fields: Sequence[str] = (), exact: bool = False, ef: int | None = None) -> list[Hit]:
        """Up to ``limit`` hits, best first. ``exact`` brute-forces; ``ef`` widens the HNSW beam."""

    @abstractmethod
    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored (unit-normalised) vectors of the keys that exist."""

    @abstractmethod
    def count(self, flt: PayloadFilter | None = None) -> int:
        """Exact number of points matching the filter."""

    @abstractmethod
    def optimize(self) -> None:
        """Build the ANN graph now (a server does this by itself)."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine (and flush what it holds)."""


# -- Qdrant Edge (in-process) ------------------------------------------------------------------------------

def _edge():
    try:
        import qdrant_edge
    except ImportError as exc:   # pragma: no cover - depends on the install
        raise ConfigError(f"vector index backend 'edge' needs qdrant-edge-py: {_EXTRA}",
                          field="vector_index.backend") from exc
    return qdrant_edge


def _edge_schema(q: Any, kind: FieldType) -> Any:
    """Integer flags get a lookup-only index: filters match values, never ranges, and the range half made
    ``EdgeShard.load`` of a 100k-point shard take ~0.11 s more (measured, ``README`` Origin tier)."""
    if kind == "integer":
        return q.IntegerIndexParams(lookup=True, range=False)
    return q.PayloadSchemaType.Keyword


class EdgeVectorIndex(VectorIndex):
    """A Qdrant Edge shard in ``<path>/shard`` with ``<path>/index.json`` (dimension and indexed fields)."""

    backend = "edge"

    def __init__(self, shard: Any, path: Path, dim: int, fields: Mapping[str, FieldType]) -> None:
        self._q = _edge()
        self._shard = shard
        self.path = path
        self.dim = dim
        self.fields = dict(fields)

    @classmethod
    def create(cls, path: Path | str, dim: int, fields: Mapping[str, FieldType] | None = None,
               m: int = 16, ef_construct: int = 100, indexing_threshold_kb: int = 1000) -> EdgeVectorIndex:
        """A new shard. Payload is kept in RAM (filters read it per candidate), and segments above
        ``indexing_threshold_kb`` of vectors get an HNSW graph on ``optimize()`` (the engine's default,
        20 MB, leaves 100k x 16-d vectors unindexed: every filtered search is then a full scan). Only the
        filtered ``fields`` are indexed: the key travels in the payload unindexed (nothing filters on it;
        its keyword index of 100k strings cost ~0.13 s of every ``load``)."""
        q = _edge()
        path = Path(path)
        fields = dict(fields or {})
        hnsw = q.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=1000)
        try:
            shard = q.EdgeShard.create(str(path / SHARD_DIR), q.EdgeConfig(
                vectors=q.EdgeVectorParams(size=dim, distance=q.Distance.Cosine), hnsw_config=hnsw,
                payload_memory=q.Memory.Cached,
                optimizers=q.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)))
            for name, kind in fields.items():
                shard.update(q.UpdateOperation.create_field_index(name, _edge_schema(q, kind)))
        except Exception as exc:
            raise IndexUnavailable(f"cannot create a Qdrant Edge shard at {path}: {exc}", field="vector_index") from exc
        (path / META_FILE).write_text(json.dumps({"dim": dim, "fields": fields, "distance": "cosine"}))
        return cls(shard, path, dim, fields)

    @classmethod
    def open(cls, path: Path | str) -> EdgeVectorIndex:
        """Open a shard (e.g. a copy of the one shipped in a bundle); one opener per shard directory."""
        q = _edge()
        path = Path(path)
        try:
            meta = json.loads((path / META_FILE).read_text())
            shard = q.EdgeShard.load(str(path / SHARD_DIR))
        except Exception as exc:
            raise IndexUnavailable(f"cannot open the Qdrant Edge shard at {path}: {exc}", field="vector_index") from exc
        return cls(shard, path, int(meta["dim"]), meta.get("fields", {}))

    @property
    def shard(self) -> Any:
        if self._shard is None:
            raise IndexUnavailable(f"the Qdrant Edge shard at {self.path} is closed", field="vector_index")
        return self._shard

    def _filter(self, flt: PayloadFilter | None) -> Any:
        if flt is None or flt.empty:
            return None
        q = self._q
        must = [q.FieldCondition(key=k, match=q.MatchValue(v)) for k, v in flt.equals.items()]
        must += [q.FieldCondition(key=k, match=q.MatchAny(list(vs))) for k, vs in flt.any_of.items()]
        must_not = [q.FieldCondition(key=k, match=q.MatchAny(list(vs))) for k, vs in flt.none_of.items() if vs]
        if flt.exclude_keys:
            must_not.append(q.HasIdCondition({uuid.UUID(point_id(k)) for k in flt.exclude_keys}))
        return q.Filter(must=must or None, must_not=must_not or None)

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except InvalidField:
            raise
        except Exception as exc:
            raise IndexUnavailable(f"Qdrant Edge {what} failed: {exc}", field="vector_index") from exc

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        q = self._q
        batch = [q.Point(id=point_id(p.key), vector=v, payload=self._payload(p, i))
                 for i, (p, v) in enumerate(zip(points, self._vectors(points), strict=True))]
        if batch:
            self._call("upsert", self.shard.update, q.UpdateOperation.upsert_points(batch))

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            q = self._q
            self._call("delete", self.shard.update, q.UpdateOperation.delete_points([point_id(k) for k in keys]))

    def search(self, vector: Any, limit: int, flt: PayloadFilter | None = None, *,
               with_fields: Sequence[str] = (), exact: bool = False, ef: int | None = None) -> list[Hit]:
        q = self._q
        req = q.QueryRequest(limit=limit, query=q.Query.Nearest(self._vector(vector, "vector")),
                             filter=self._filter(flt), with_payload=[KEY_FIELD, *with_fields],
                             params=q.SearchParams(hnsw_ef=ef, exact=exact))
        return [_hit(p.payload, p.score) for p in self._call("search", self.shard.query, req)]

    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        recs = self._call("retrieve", self.shard.retrieve, [point_id(k) for k in keys], [KEY_FIELD], True)
        return {r.payload[KEY_FIELD]: np.asarray(r.vector, dtype=np.float32) for r in recs}

    def count(self, flt: PayloadFilter | None = None) -> int:
        q = self._q
        return int(self._call("count", self.shard.count, q.CountRequest(filter=self._filter(flt), exact=True)))

    def optimize(self) -> None:
        self._call("optimize", self.shard.optimize)

    def close(self) -> None:
        if self._shard is not None:
            self._call("flush", self._shard.flush)
            self._shard.close()
            self._shard = None


def _hit(payload: dict, score: float) -> Hit:
    payload = dict(payload)
    key = payload.pop(KEY_FIELD)
    return Hit(key, float(score), payload)


# -- Qdrant server (qdrant-client) -------------------------------------------------------------------------

def _client_models():
    try:
        from qdrant_client import models
    except ImportError as exc:   # pragma: no cover - depends on the install
        raise ConfigError(f"vector index backend 'qdrant' needs qdrant-client: {_EXTRA}",
                          field="vector_index.backend") from exc
    return models


class QdrantServerIndex(VectorIndex):
    """One collection on a Qdrant server (or qdrant-client's local mode), created if missing."""

    backend = "qdrant"

    def __init__(self, client: Any, collection: str, dim: int, fields: Mapping[str, FieldType] | None = None) -> None:
        m = self._m = _client_models()
        self._client = client
        self.collection = collection
        self.dim = dim
        self.fields = dict(fields or {})
        try:
            if not client.collection_exists(collection):
                client.create_collection(collection, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE))
                types = {"integer": m.PayloadSchemaType.INTEGER, "keyword": m.PayloadSchemaType.KEYWORD}
                for name, kind in self.fields.items():
                    client.create_payload_index(collection, name, field_schema=types[kind])
        except Exception as exc:
            raise IndexUnavailable(f"Qdrant collection {collection!r} unavailable: {exc}", field="vector_index") from exc

    @classmethod
    def connect(cls, url: str, collection: str, dim: int, fields: Mapping[str, FieldType] | None = None,
                timeout_s: float = 1.0) -> QdrantServerIndex:
        """``url``: http(s)://host:port of a server, ``:memory:``, or a local directory path."""
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:   # pragma: no cover
            raise ConfigError(f"vector index backend 'qdrant' needs qdrant-client: {_EXTRA}",
                              field="vector_index.backend") from exc
        if url.startswith(("http://", "https://")):
            client = QdrantClient(url=url, timeout=max(1, int(timeout_s)))
        elif url == ":memory:":
            client = QdrantClient(":memory:")
        else:
            client = QdrantClient(path=url)
        return cls(client, collection, dim, fields)

    def _filter(self, flt: PayloadFilter | None) -> Any:
        if flt is None or flt.empty:
            return None
        m = self._m
        must: list[Any] = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in flt.equals.items()]
        must += [m.FieldCondition(key=k, match=m.MatchAny(any=list(vs))) for k, vs in flt.any_of.items()]
        must_not: list[Any] = [m.FieldCondition(key=k, match=m.MatchAny(any=list(vs)))
                               for k, vs in flt.none_of.items() if vs]
        if flt.exclude_keys:
            must_not.append(m.HasIdCondition(has_id=[point_id(k) for k in flt.exclude_keys]))
        return m.Filter(must=must or None, must_not=must_not or None)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InvalidField:
            raise
        except Exception as exc:
            raise IndexUnavailable(f"Qdrant {what} failed: {exc}", field="vector_index") from exc

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        m = self._m
        batch = [m.PointStruct(id=point_id(p.key), vector=v, payload=self._payload(p, i))
                 for i, (p, v) in enumerate(zip(points, self._vectors(points), strict=True))]
        if batch:
            self._call("upsert", self._client.upsert, self.collection, points=batch, wait=True)

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            m = self._m
            self._call("delete", self._client.delete, self.collection,
                       points_selector=m.PointIdsList(points=[point_id(k) for k in keys]), wait=True)

    def search(self, vector: Any, limit: int, flt: PayloadFilter | None = None, *,
               with_fields: Sequence[str] = (), exact: bool = False, ef: int | None = None) -> list[Hit]:
        m = self._m
        res = self._call("search", self._client.query_points, self.collection,
                         query=self._vector(vector, "vector"), query_filter=self._filter(flt), limit=limit,
                         with_payload=[KEY_FIELD, *with_fields],
                         search_params=m.SearchParams(hnsw_ef=ef, exact=exact) if exact or ef else None)
        return [_hit(p.payload, p.score) for p in res.points]

    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        recs = self._call("retrieve", self._client.retrieve, self.collection, [point_id(k) for k in keys],
                          with_payload=[KEY_FIELD], with_vectors=True)
        return {r.payload[KEY_FIELD]: np.asarray(r.vector, dtype=np.float32) for r in recs}

    def count(self, flt: PayloadFilter | None = None) -> int:
        res = self._call("count", self._client.count, self.collection, count_filter=self._filter(flt), exact=True)
        return int(res.count)

    def optimize(self) -> None:
        return None             # the server optimises in the background

    def close(self) -> None:
        self._call("close", self._client.close)


BACKENDS = ("edge", "qdrant")


def open_vector_index(backend: str, location: str | Path, *, dim: int, fields: Mapping[str, FieldType] | None = None,
                      collection: str = "items") -> VectorIndex:
    """The factory config uses: ``edge`` creates or opens a shard directory at ``location``; ``qdrant``
    connects to the server URL (or local-mode path / ``:memory:``) at ``location``."""
    if backend == "edge":
        path = Path(location)
        if (path / META_FILE).is_file():
            return EdgeVectorIndex.open(path)
        return EdgeVectorIndex.create(path, dim, fields)
    if backend == "qdrant":
        return QdrantServerIndex.connect(str(location), collection, dim, fields)
    raise ConfigError(f"unknown vector index backend {backend!r}; valid: {', '.join(BACKENDS)}",
                      field="vector_index.backend")
