"""SessionStore: the edge's read side of the online store (Redis/Valkey in production and locally).

The store is optional at the edge: when it is down (or configured as ``none``) the edge answers from
its caches and priors with ``degraded=true``. After an error the store is skipped for
``retry_after_s`` (a simple circuit breaker); the background refreshers keep probing and the redis
client reconnects by itself when the server is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from strata.shared.errors import StoreUnavailable
from strata.shared.keys import bandit_key, session_key
from strata.shared.online_store.client import configured, connect_required
from strata.shared.online_store.codecs import SessionState, decode_session

logger = logging.getLogger(__name__)


class SessionStore:
    """Interface. ``configured`` is False for the ``none`` store (the edge then never claims freshness)."""

    configured = False

    async def get_session(self, tenant: str, session_id: str) -> SessionState:
        return SessionState(None, None)

    async def get_bandit_counts_many(self, keys: list[tuple[str, str]]) -> list[dict[bytes, bytes]]:
        """The counts hashes of many (tenant, slot) pairs in one round trip."""
        return [{} for _ in keys]

    async def ping(self) -> bool:
        return False

    async def warm(self, connections: int) -> bool:
        """Open up to ``connections`` connections now (concurrent PINGs); True if all answered."""
        return False

    async def close(self) -> None:
        return None


class RedisSessionStore(SessionStore):
    configured = True

    def __init__(self, url: str, timeout_s: float) -> None:
        self._r = connect_required(url, timeout_s, field="edge.store.url")

    async def get_session(self, tenant: str, session_id: str) -> SessionState:
        try:
            raw = await self._r.hmget(session_key(tenant, session_id), "vec", "updated_ms")
        except Exception as exc:
            raise StoreUnavailable(f"session read failed: {type(exc).__name__}: {exc}") from exc
        # redis-py's stubs cannot know that replies are bytes (decode_responses is off)
        return decode_session(raw[0], raw[1])      # type: ignore[arg-type]

    async def get_bandit_counts_many(self, keys: list[tuple[str, str]]) -> list[dict[bytes, bytes]]:
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for tenant, slot in keys:
                    pipe.hgetall(bandit_key(tenant, slot))
                return await pipe.execute()
        except Exception as exc:
            raise StoreUnavailable(f"bandit read failed: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._r.ping())
        except Exception:
            return False

    async def warm(self, connections: int) -> bool:
        # The first burst of requests after start must not pay for connects (and the client's set-up
        # commands) inside its few-millisecond budget.
        return all(await asyncio.gather(*(self.ping() for _ in range(max(connections, 1)))))

    async def close(self) -> None:
        await self._r.aclose()


def make_store(url: str, timeout_s: float) -> SessionStore:
    """The ``none`` store or the store at ``url`` (``shared.online_store.client``)."""
    return RedisSessionStore(url, timeout_s) if configured(url) else SessionStore()


def describe(exc: BaseException) -> str:
    """``Type: message`` (``TimeoutError()`` has an empty message; the type alone still says what failed)."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ is not None else exc
    msg = str(exc)
    return msg if isinstance(exc, StoreUnavailable) and msg else (f"{type(cause).__name__}: {msg}" if msg
                                                                  else type(cause).__name__)


def _refused(exc: BaseException) -> bool:
    """A connection that could not be made or was dropped (not a missed deadline): the store is down."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ is not None else exc
    if isinstance(cause, TimeoutError):
        return False
    import redis.exceptions as rexc

    return isinstance(cause, ConnectionError | OSError | rexc.ConnectionError) and not isinstance(
        cause, rexc.TimeoutError)


class StoreHealth:
    """Whether the store is up, as the last probe or read found it (a circuit breaker).

    ``up`` turns true only when a probe (a PING within ``probe_timeout_s``) or a read succeeded, never
    because time passed. A refused or dropped connection marks the store down at once. A missed read
    deadline only makes it suspect: one probe decides, while requests keep their hard per-read budget
    (so a burst of requests on a busy event loop cannot trip the breaker on a healthy store). While
    down, requests skip the store; ``run`` probes it every ``retry_after_s``.
    """

    def __init__(self, ping: Callable[[], Awaitable[bool]] | None = None, retry_after_s: float = 1.0,
                 probe_timeout_s: float = 0.25) -> None:
        self.ping = ping
        self.retry_after_s = retry_after_s
        self.probe_timeout_s = probe_timeout_s
        self.up = False
        self.errors = 0
        self.probes = 0
        self.last_error = ""
        self._probe: asyncio.Task | None = None

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = describe(exc)
        if _refused(exc) or self.ping is None:
            self._down(self.last_error)
        else:
            self.check()

    def succeeded(self) -> None:
        if not self.up:
            logger.info("store reachable again")
        self.up = True

    def check(self) -> None:
        """Start one probe unless one is running (it marks the store up or down)."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self.probe(), name="store-probe")

    async def probe(self) -> bool:
        ping = self.ping
        assert ping is not None             # a store without a ping is marked down, never probed
        self.probes += 1
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                ok = await ping()
        except TimeoutError:
            ok = False
            self.last_error = f"TimeoutError: no PING answer within {self.probe_timeout_s * 1000:.0f} ms"
        if ok:
            self.succeeded()
        else:
            self._down(self.last_error or "PING failed")
        return ok

    def _down(self, reason: str) -> None:
        if self.up:
            logger.warning("store unavailable; serving degraded from caches and priors: %s", reason)
        self.up = False

    async def run(self) -> None:
        """While the store is down, probe it every ``retry_after_s``."""
        while True:
            await asyncio.sleep(self.retry_after_s)
            if not self.up and (self._probe is None or self._probe.done()):
                await self.probe()

    async def stop(self) -> None:
        probe = self._probe
        if probe is not None and not probe.done():
            probe.cancel()
            await asyncio.wait((probe,), timeout=1.0)


async def read_with_deadline(coro, timeout_s: float):
    """Await a store call for at most ``timeout_s``: a hard cap.

    The call runs as its own task and the caller stops waiting at the deadline; the task is cancelled
    but its clean-up (redis-py disconnects a connection whose read was interrupted, which can take as
    long as its socket timeout) happens after the caller has moved on, not inside its budget."""
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout_s)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise TimeoutError(f"store read exceeded its {timeout_s * 1000:g} ms budget")
    return task.result()


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()          # mark retrieved: a late failure of an abandoned read is not news
