"""What the ingest keeps of the events it answered 202 for, until the processor has applied them.

A 202 means the log acknowledged the event (acks=all). A log that then loses its records (the embedded
Tansu broker keeps them in memory; a Kafka topic deleted and recreated) would lose the ones not yet applied.
So the ingest keeps every acknowledged batch, by partition and offset, until the processor's watermark for that
partition (of the same log: the topic id in ``keys.LOG_IDS_KEY``) passes it; when it sees the log reset (a
new topic id, or an acknowledgement at a lower offset than before) it appends everything it holds again. The
processor applies by event id, so events it had applied already count once.

Bounded by bytes (``streaming.replay_buffer_bytes``): past it the oldest batches are dropped (counted); with a
processor keeping up it holds about one trim interval of traffic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_OVERHEAD = 120       # bytes per kept record beyond its key and value (tuple, two bytes objects)


@dataclass(slots=True)
class _Kept:
    first: int                      # offset of its first record
    last: int
    records: list[tuple[bytes, bytes]]
    nbytes: int
    gone: bool = False              # trimmed or taken
    offsets: list[int] | None = None    # each record's offset once some were forgotten (else first, first + 1, ...)
    members: list[str | None] | None = None   # each record's id in the processor's dedup sets (computed once)

    def record_offsets(self) -> list[int]:
        return self.offsets if self.offsets is not None else list(range(self.first, self.first + len(self.records)))


class ReplayBuffer:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.dropped = 0                                    # records dropped past the bound (not protected)
        self._parts: dict[tuple[str, int], deque[_Kept]] = {}
        self._order: deque[tuple[tuple[str, int], _Kept]] = deque()    # every kept batch, oldest first

    def __len__(self) -> int:
        return sum(len(k.records) for q in self._parts.values() for k in q)

    def add(self, topic: str, partition: int, first: int, records: list[tuple[bytes, bytes]]) -> None:
        n = sum(len(k) + len(v) + _OVERHEAD for k, v in records)
        kept = _Kept(first, first + len(records) - 1, records, n)
        self._parts.setdefault((topic, partition), deque()).append(kept)
        self._order.append(((topic, partition), kept))
        self.nbytes += n
        order = self._order
        while order and (order[0][1].gone or self.nbytes > self.max_bytes):
            tp, old = order.popleft()
            if old.gone:
                continue
            q = self._parts[tp]
            if q and q[0] is old:           # the oldest batch of its partition: dropped, unprotected
                q.popleft()
                old.gone = True
                self.nbytes -= old.nbytes
                self.dropped += len(old.records)

    def trim(self, topic: str, applied: dict[int, int]) -> None:
        """Forget the batches of ``topic`` whose last offset is at or below the partition's applied watermark."""
        for (t, p), q in self._parts.items():
            if t != topic or p not in applied:
                continue
            wm = applied[p]
            while q and q[0].last <= wm:
                kept = q.popleft()
                kept.gone = True
                self.nbytes -= kept.nbytes

    def batches(self, topic: str) -> list[tuple[int, _Kept]]:
        """The kept batches of ``topic`` with their partitions, oldest first per partition."""
        return [(p, k) for (t, p), q in self._parts.items() if t == topic for k in q]

    def keep_only(self, topic: str, partition: int, kept: _Kept, keep: list[bool]) -> list[tuple[bytes, bytes]]:
        """Forget the records of one kept batch whose flag is False; returns them."""
        if kept.gone or all(keep):
            return []
        offsets, members = kept.record_offsets(), kept.members
        out = [r for r, f in zip(kept.records, keep, strict=True) if not f]
        kept.records = [r for r, f in zip(kept.records, keep, strict=True) if f]
        kept.offsets = [o for o, f in zip(offsets, keep, strict=True) if f]
        if members is not None:
            kept.members = [m for m, f in zip(members, keep, strict=True) if f]
        n = sum(len(k) + len(v) + _OVERHEAD for k, v in kept.records)
        self.nbytes -= kept.nbytes - n
        kept.nbytes = n
        if not kept.records:
            kept.gone = True
            self._parts[(topic, partition)].remove(kept)
        return out

    def take(self, topic: str) -> list[tuple[bytes, bytes]]:
        """Everything kept for ``topic``, oldest first per partition, removed from the buffer (to append again)."""
        out: list[tuple[bytes, bytes]] = []
        for (t, _), q in self._parts.items():
            if t == topic:
                while q:
                    kept = q.popleft()
                    kept.gone = True
                    self.nbytes -= kept.nbytes
                    out += kept.records
        return out
