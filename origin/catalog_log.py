"""Catalog updates that survive a restart: every accepted ``POST /v1/items`` is appended to a local JSON-lines
file (flushed and fsynced before the answer), and replayed in order over the bundle's catalog when the origin
starts. Each line is one request: ``{"ts", "tenant", "key_id", "items": [...]}`` (who changed what, when: it is
the catalog's audit trail too).

``origin.catalog_log``: a path, or unset for ``catalog-updates.jsonl`` in the model's registry directory
(``<registry>/<model>/``; every bundle version starts from it), or ``none`` (not durable). Several origin
replicas each keep their own file (on one machine, ``strata up --replicas``, they may share one: each update is
one ``O_APPEND`` write, so lines never interleave). With ``catalog.broker`` set, the compacted catalog topic
replaces this file (``shared.catalog_feed``): every replica applies every update at once, in one order. A torn last line (a crash mid-write) is skipped at replay, with a warning.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import orjson

from strata.shared.contracts.origin import ItemUpdate

logger = logging.getLogger(__name__)
FILE_NAME = "catalog-updates.jsonl"


def catalog_log_path(setting: str | None, registry: str, model: str) -> Path | None:
    if setting is None:
        return Path(registry) / model / FILE_NAME
    if setting.strip().lower() in ("", "none"):
        return None
    return Path(setting)


class CatalogLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, updates: list[ItemUpdate], tenant: str | None, key_id: str | None) -> None:
        """Durable when this returns (blocking: call it off the event loop)."""
        line = orjson.dumps({"ts": int(time.time() * 1000), "tenant": tenant, "key_id": key_id,
                             "items": [asdict(u) for u in updates]}) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replay(self) -> list[ItemUpdate]:
        """Every logged update in order (an item updated twice appears twice: the later one wins)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[ItemUpdate] = []
        lines = raw.split(b"\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.extend(ItemUpdate(**it) for it in orjson.loads(line)["items"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                last = all(not rest.strip() for rest in lines[n:])
                logger.warning("catalog log %s line %d skipped (%s): %s", self.path, n,
                               "torn last write" if last else "unreadable", exc)
        return out
