"""What ``strata up --endpoints-file`` writes: the stack's base URLs, store URL and broker, as JSON.

The five keys ``edge``, ``streaming``, ``origin``, ``store``, ``broker`` are a contract (scripts and
``strata loadtest`` read them); with more than one replica of a process (``--replicas``) the file also has
``replicas``: every replica's base URL per kind. Written atomically: a reader polling for it never sees half.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

ENDPOINT_KEYS = ("edge", "streaming", "origin", "store", "broker")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs (the first replica's), the store URL, the broker HOST:PORT; ``replicas`` only with several."""

    edge: str
    streaming: str
    origin: str
    store: str
    broker: str
    replicas: dict[str, list[str]] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        if self.replicas is None:
            del data["replicas"]
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def read(cls, path: Path | str) -> Endpoints:
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in ENDPOINT_KEYS}, replicas=data.get("replicas"))


def write_endpoints(path: Path, endpoints: Endpoints) -> None:
    """Atomically: a reader polling for the file never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(endpoints.to_json())
    tmp.replace(path)
