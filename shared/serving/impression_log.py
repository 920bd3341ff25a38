"""The impression log of a serving tier: every answer served becomes an ``impression`` event on the events
topic (the edge's and tier 2's; ``tier`` says which served it).

The request path only calls ``offer`` (a length check and a deque append: O(1), never awaits, never
raises); building the events, encoding them and sending them happen in ``run``, a background task that
wakes every ``linger_ms``. The buffer is bounded: when the log is slow or down, impressions past
``buffer`` are dropped and counted (``strata_edge_impressions_dropped_total``), and so are the
impressions of a send the log did not acknowledge; answers are served regardless. The producer
connects in the background and reconnects by itself (aiokafka), so the tier starts without the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import NamedTuple

import numpy as np

from strata.shared.config import ImpressionSettings
from strata.shared.contracts.event_records import encode_event, event_key

logger = logging.getLogger(__name__)
RECONNECT_S = 1.0
PRIOR_DIGITS = 6              # the processor sums the priors in millionths (``shared.keys.expected_field``)
YIELD_EVERY = 32              # events built and handed to the producer between two turns of the event loop


class Shown(NamedTuple):
    """What one answer showed: the fields, in order, of the plain tuple kept with a cached answer (``shown``
    builds it: an exact tuple of strings, bools and arrays is untracked by the garbage collector, a
    NamedTuple instance never is)."""

    tenant: str
    user_id: str
    session_id: str
    slot: str
    channel: str
    items: tuple[str, ...]
    explored: tuple[bool, ...]
    alpha: np.ndarray            # the posterior each item was sampled from
    beta: np.ndarray
    model_version: str
    prior: np.ndarray | None = None   # the scorer's click probability per item (the processor sums it)


def shown(tenant: str, user_id: str, session_id: str, slot: str, channel: str, items: tuple[str, ...],
          explored: tuple[bool, ...], alpha: np.ndarray, beta: np.ndarray, model_version: str,
          prior: np.ndarray | None = None) -> tuple:
    """A ``Shown`` as a plain tuple (what the request path keeps)."""
    return (tenant, user_id, session_id, slot, channel, items, explored, alpha, beta, model_version, prior)


def event_prior(prior: np.ndarray | None) -> list[float] | None:
    """The priors as an impression event carries them (and as its impression id signs them)."""
    return None if prior is None else prior.astype(np.float64).round(PRIOR_DIGITS).tolist()


def impression_event(impression_id: str, ts_ms: int, shown: tuple, user_id: str | None = None,
                     tier: str = "edge") -> dict:
    """The ``impression`` event (``shared.contracts.api``) of one served answer (``shown``: a ``Shown`` or its
    plain tuple)."""
    shown = shown if isinstance(shown, Shown) else Shown(*shown)
    ev = {"event_id": impression_id, "type": "impression", "tenant": shown.tenant,
          "user_id": user_id or shown.user_id, "session_id": shown.session_id, "ts": ts_ms,
          "channel": shown.channel, "slot": shown.slot, "impression_id": impression_id,
          "items": list(shown.items), "explored": list(shown.explored),
          "alpha": shown.alpha.tolist(), "beta": shown.beta.tolist()}
    if shown.prior is not None:
        ev["prior"] = event_prior(shown.prior)
    ev["tier"] = tier
    ev["model_version"] = shown.model_version
    return ev


class ImpressionLog:
    def __init__(self, cfg: ImpressionSettings, tier: str = "edge") -> None:
        self.cfg = cfg
        self.tier = tier
        self.max = cfg.buffer
        self.buffer: deque[tuple] = deque()
        self.logged = 0               # acknowledged by the log
        self.dropped = 0              # buffer full, or a send that failed
        self.connected = False
        self.last_error = ""
        self._producer = None

    def offer(self, impression_id: str, ts_ms: int, shown: tuple, user_id: str | None) -> None:
        """Queue one served answer's impression; drop (and count) it when the buffer is full."""
        if len(self.buffer) >= self.max:
            self.dropped += 1
            return
        self.buffer.append((impression_id, ts_ms, shown, user_id))

    async def _connect(self) -> bool:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.cfg.broker, acks="all", linger_ms=5,
                                    request_timeout_ms=int(self.cfg.timeout_s * 1000), enable_idempotence=False,
                                    max_batch_size=1 << 20)
        try:
            async with asyncio.timeout(self.cfg.timeout_s * 2):
                await producer.start()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        self.connected = True
        logger.info("impression log connected", extra={"broker": self.cfg.broker})
        return True

    async def send_once(self) -> int:
        """Send what is buffered (up to ``batch`` per request); returns how many the log acknowledged."""
        producer = self._producer
        buf = self.buffer
        sent = 0
        while buf and producer is not None:
            chunk = [buf.popleft() for _ in range(min(len(buf), self.cfg.batch))]
            try:
                async with asyncio.timeout(self.cfg.timeout_s):
                    futures = []
                    for j, (imp_id, ts_ms, what, user_id) in enumerate(chunk, 1):
                        ev = impression_event(imp_id, ts_ms, what, user_id, self.tier)
                        futures.append(await producer.send(self.cfg.topic, encode_event(ev),
                                                           key=event_key(ev["tenant"], ev["session_id"])))
                        if not j % YIELD_EVERY:     # let requests in: never hold the loop for a whole batch
                            await asyncio.sleep(0)
                    await asyncio.gather(*futures)
            except asyncio.CancelledError:
                self.dropped += len(chunk)
                raise
            except Exception as exc:   # broker down or slow: these are lost, the next send retries the log
                self.dropped += len(chunk)
                if self.connected:
                    logger.warning("impression log send failed; dropping impressions until it recovers: %s: %s",
                                   type(exc).__name__, exc)
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                return sent
            sent += len(chunk)
            self.logged += len(chunk)
            if not self.connected:
                logger.info("impression log sending again")
            self.connected = True
        return sent

    async def run(self) -> None:
        linger = self.cfg.linger_ms / 1000
        while True:
            if self._producer is None and not await self._connect():
                await asyncio.sleep(RECONNECT_S)
                continue
            await asyncio.sleep(linger)
            await self.send_once()

    async def stop(self, flush_s: float = 2.0) -> None:
        """Send what is still buffered (bounded by ``flush_s``; what is left counts as dropped), then close
        the producer."""
        if self._producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(flush_s):
                    await self.send_once()
        self.dropped += len(self.buffer)
        self.buffer.clear()
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        self.connected = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(flush_s):
                await producer.stop()
