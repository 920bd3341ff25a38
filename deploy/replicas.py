"""``strata up --replicas edge=2,streaming=2,processor=2,origin=2``: how many of each Strata process run.

A process kind with one replica keeps its plain name (``edge``, its log ``edge.log``); with more, the replicas
are ``edge-1``, ``edge-2`` ... (logs ``edge-1.log`` ...). Bad input raises ``ValueError`` with a message that
starts with the flag and says what is wrong; the CLI prints it as ``strata up: bad input: ...`` (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["edge", "streaming", "processor", "origin"]
KINDS: tuple[Kind, ...] = get_args(Kind)
MAX_REPLICAS = 8        # per kind: each replica is a process (a core when busy) on this one machine
FLAG = "--replicas"
_FORM = "expected NAME=N[,NAME=N...], e.g. edge=2,streaming=2,processor=2,origin=2"


@dataclass(frozen=True, slots=True)
class Replicas:
    edge: int = 1
    streaming: int = 1
    processor: int = 1
    origin: int = 1

    def count(self, kind: Kind) -> int:
        return int(getattr(self, kind))

    def names(self, kind: Kind) -> list[str]:
        """The service names of ``kind``'s replicas, in start order (the first is the one the endpoints name)."""
        n = self.count(kind)
        return [kind] if n == 1 else [f"{kind}-{i}" for i in range(1, n + 1)]

    @property
    def several(self) -> bool:
        """Whether any kind runs more than once."""
        return any(self.count(kind) > 1 for kind in KINDS)

    @classmethod
    def parse(cls, text: str) -> Replicas:
        """``edge=2,origin=3`` (any subset of the kinds, each at most once; the others stay 1)."""
        if not text.strip():
            raise ValueError(f"{FLAG} is empty; {_FORM}")
        counts: dict[str, int] = {}
        for part in text.split(","):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not name or not value:
                raise ValueError(f"{FLAG} {text!r}: {part.strip()!r} is not NAME=N; {_FORM}")
            if name not in KINDS:
                raise ValueError(f"{FLAG} {name}={value}: unknown name {name!r}; names: {', '.join(KINDS)}")
            if name in counts:
                raise ValueError(f"{FLAG} {text!r}: {name} is given twice")
            if not (value.isascii() and value.isdigit()):
                raise ValueError(f"{FLAG} {name}={value}: N must be a whole number from 1 to {MAX_REPLICAS}")
            n = int(value)
            if n < 1:
                raise ValueError(f"{FLAG} {name}={value}: N must be at least 1")
            if n > MAX_REPLICAS:
                raise ValueError(f"{FLAG} {name}={value}: at most {MAX_REPLICAS} replicas of a process on one "
                                 "machine")
            counts[name] = n
        return cls(**counts)

    def __str__(self) -> str:
        return ",".join(f"{kind}={self.count(kind)}" for kind in KINDS)
