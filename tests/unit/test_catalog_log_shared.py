"""Several origins on one machine (``strata up --replicas origin=N``) append to one catalog log: each update is
one ``O_APPEND`` write of a whole line, so concurrent appends never interleave and the replay reads every
update (``origin.catalog_log``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from strata.origin.catalog_log import CatalogLog
from strata.shared.contracts.origin import ItemUpdate

WRITERS, APPENDS, ITEMS = 4, 40, 300       # lines of ~25 kB: many pages each, written at the same time


def _updates(writer: int, n: int) -> list[ItemUpdate]:
    return [ItemUpdate(f"SKU-{writer}-{n}-{i:04d}", f"title {writer} {n} {i} " + "x" * 20, "home", 9.5, i, False)
            for i in range(ITEMS)]


def test_concurrent_appends_from_several_writers_replay_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "catalog-updates.jsonl"
    logs = [CatalogLog(path) for _ in range(WRITERS)]          # one per origin, each opening the file per append
    start = threading.Barrier(WRITERS)

    def write(w: int) -> None:
        start.wait()
        for n in range(APPENDS):
            logs[w].append(_updates(w, n), "default", f"key-{w}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with caplog.at_level(logging.WARNING, logger="strata.origin.catalog_log"):
        replayed = CatalogLog(path).replay()
    assert caplog.records == []                                # no torn or unreadable line
    assert len(path.read_bytes().splitlines()) == WRITERS * APPENDS
    assert len(replayed) == WRITERS * APPENDS * ITEMS
    for w in range(WRITERS):                                   # each writer's updates in its own order
        mine = [u.item_id for u in replayed if u.item_id.startswith(f"SKU-{w}-")]
        assert mine == [u.item_id for n in range(APPENDS) for u in _updates(w, n)]
