"""Guardrail policy reload without a restart: re-read the config file when it changes (or on SIGHUP).

The same layering as at start applies (defaults < YAML < ``STRATA_*`` env < flags), so a banned list
set by env or flag is not changed by editing the file. Only the ``guardrails`` section is applied
live; other changed keys are logged as needing a restart. A file that no longer validates is logged
and ignored: the running policy stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from strata.edge.model_slot import ModelSlot
from strata.shared.config import SettingsSource, StrataSettings
from strata.shared.errors import StrataError

logger = logging.getLogger(__name__)


class ConfigWatch:
    def __init__(self, source: SettingsSource, slot: ModelSlot, current: StrataSettings,
                 on_result: Callable[[str], None] = lambda result: None) -> None:
        self.source = source
        self.slot = slot
        self.settings = current
        self.on_result = on_result        # "ok" | "invalid", for metrics
        self._stamp = source.stamp()

    def check_once(self, force: bool = False) -> bool:
        """Re-read the file if it changed (or ``force``); True when a new guardrail policy went live."""
        stamp = self.source.stamp()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            new = self.source.load()
        except StrataError as exc:
            self.on_result("invalid")
            logger.error("config %s does not validate; keeping the running policy: %s", self.source.path, exc.reason)
            return False
        old, self.settings = self.settings, new
        restart = [key for key in ("log_level", "edge") if getattr(old, key) != getattr(new, key)]
        if restart:
            logger.warning("config keys changed that need a restart to apply: %s", restart)
        if not self.slot.set_policy(new.guardrails):
            return False
        self.on_result("ok")
        logger.info("guardrail policy reloaded", extra={"banned_items": len(new.guardrails.banned_items),
                                                         "banned_categories": list(new.guardrails.banned_categories)})
        return True

    async def run(self, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            try:
                self.check_once()
            except Exception:  # the watcher must survive anything
                logger.exception("config check failed")
