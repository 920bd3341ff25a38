"""Hot reload: poll ``CURRENT``; verify, load and swap a new bundle; keep the old one if it is bad."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from edge.bundle_loader import load_bundle
from shared.bundle import read_current
from shared.errors import BundleError

if TYPE_CHECKING:
    from edge.service import EdgeService

logger = logging.getLogger(__name__)


async def check_once(svc: EdgeService) -> str | None:
    """Returns the newly installed version, or None when nothing changed or the new bundle was refused."""
    cfg = svc.cfg
    try:
        version = read_current(cfg.registry, cfg.model)
    except BundleError as exc:
        logger.warning("registry pointer unreadable; keeping current model: %s", exc)
        return None
    live = svc.ranker.version if svc.ranker else None
    if version == live or version in svc.refused_versions:
        return None
    try:
        bundle = await asyncio.to_thread(load_bundle, cfg.registry, cfg.model, version, cfg.ort_threads)
    except BundleError as exc:
        svc.refused_versions.add(version)
        svc.metrics.inst.inc("reloads_total", ("refused",))
        logger.error("refused bundle %s; keeping %s: %s", version, live, exc)
        return None
    svc.install(bundle)
    svc.metrics.inst.inc("reloads_total", ("ok",))
    logger.info("hot-reloaded model %s -> %s", live, version)
    return version


async def watch_registry(svc: EdgeService) -> None:
    while True:
        await asyncio.sleep(svc.cfg.reload_poll_s)
        try:
            await check_once(svc)
        except Exception:  # the watcher must survive anything
            logger.exception("reload check failed")
