"""Hot reload: poll ``CURRENT``; verify, load and install a new bundle; keep the old one if it is bad."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from strata.edge.model_slot import ModelSlot
from strata.shared.errors import BundleError
from strata.shared.models.bundle import read_current
from strata.shared.models.scoring_bundle import LoadedBundle, load_bundle

logger = logging.getLogger(__name__)


class RegistryWatch:
    """Works through the model slot only: ``current`` version, ``install``, ``refused`` versions."""

    def __init__(self, slot: ModelSlot, registry: str | Path, model: str, ort_threads: int,
                 on_result: Callable[[str], None] = lambda result: None) -> None:
        self.slot = slot
        self.registry = registry
        self.model = model
        self.ort_threads = ort_threads
        self.on_result = on_result        # "ok" | "refused", for metrics

    def load(self, version: str | None = None) -> LoadedBundle:
        return load_bundle(self.registry, self.model, version, self.ort_threads)

    async def check_once(self) -> str | None:
        """The newly installed version, or None when nothing changed or the new bundle was refused."""
        try:
            version = read_current(self.registry, self.model)
        except BundleError as exc:
            logger.warning("registry pointer unreadable; keeping current model: %s", exc)
            return None
        live = self.slot.version
        if version == live or version in self.slot.refused:
            return None
        try:
            bundle = await asyncio.to_thread(self.load, version)
            self.slot.install(bundle)
        except BundleError as exc:
            self.slot.refuse(version)
            self.on_result("refused")
            logger.error("refused bundle %s; keeping %s: %s", version, live, exc)
            return None
        self.on_result("ok")
        logger.info("hot-reloaded model %s -> %s", live, version)
        return version

    async def run(self, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self.check_once()
            except Exception:  # the watcher must survive anything
                logger.exception("reload check failed")


async def check_once(watch: RegistryWatch) -> str | None:
    """One poll of the registry (tests and tools); see ``RegistryWatch.check_once``."""
    return await watch.check_once()
