"""One way to open the online store: URL checked (``none`` means no store), ``valkey://`` accepted, and
redis-py's retries off, so a dead server fails within the caller's budget instead of redis-py's ~4 s of
retries. Every tier opens its connections here."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from strata.shared.errors import ConfigError

if TYPE_CHECKING:      # the client library is imported when a store is actually configured
    import redis.asyncio as aioredis

SCHEMES = ("redis://", "rediss://", "unix://", "valkey://")
CLUSTER_SCHEMES = ("redis+cluster://", "valkey+cluster://", "rediss+cluster://")
NONE = ("", "none")
MIN_TIMEOUT_S = 0.05       # a socket timeout below this only produces spurious disconnects


def configured(url: str) -> bool:
    """False for the ``none`` store (the tier then runs on its caches and priors)."""
    return url.strip().lower() not in NONE


def check_url(url: str, field: str = "store.url") -> str:
    """The URL as redis-py reads it (``valkey://`` -> ``redis://``); a ``ConfigError`` naming ``field`` when
    the scheme is not one of ``SCHEMES``."""
    if url.startswith(CLUSTER_SCHEMES):
        seeds(url, field)
        return url
    if not url.startswith(SCHEMES):
        raise ConfigError("store URL must be redis://, rediss://, unix://, valkey://, redis+cluster://, "
                          f"valkey+cluster:// or 'none', got {url!r}", field=field)
    return url.replace("valkey://", "redis://", 1)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def seeds(url: str, field: str = "store.url") -> tuple[list[tuple[str, int]], str | None, str | None]:
    """A cluster URL's seed nodes and credentials: ``scheme://[user:password@]host:port[,host:port...][/0]``."""
    from urllib.parse import unquote
    rest = url.split("://", 1)[1]
    user = password = None
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        user, _, password = cred.partition(":")
        user, password = unquote(user) or None, unquote(password) or None
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    out = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"cluster URL seed must be host:port, got {hp!r} in {url!r}", field=field)
        out.append((host.strip("[]"), int(port)))
    return out, user, password


def connect(url: str, timeout_s: float, *, field: str = "store.url",
            blocking_reads: bool = False) -> aioredis.Redis | aioredis.RedisCluster | None:
    """An asyncio client for ``url`` (None for ``none``) with no retries: one attempt per call, connects and
    reads bounded by ``timeout_s`` (at least ``MIN_TIMEOUT_S``). ``blocking_reads`` leaves reads unbounded
    (a pub/sub subscriber waits for messages); connects stay bounded. No health-check PINGs on the request
    path. Connections open lazily; nothing is sent here."""
    if not configured(url):
        return None
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    t = max(timeout_s, MIN_TIMEOUT_S)
    if is_cluster(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        nodes, user, password = seeds(url, field)
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], username=user, password=password,
                            ssl=url.startswith("rediss+"), require_full_coverage=False,
                            retry=Retry(NoBackoff(), 1), socket_timeout=None if blocking_reads else t,
                            socket_connect_timeout=t, health_check_interval=0)
    return aioredis.from_url(check_url(url, field), retry=Retry(NoBackoff(), 0),
                             socket_timeout=None if blocking_reads else t, socket_connect_timeout=t,
                             health_check_interval=0)


def connect_required(url: str, timeout_s: float, *, field: str = "store.url") -> aioredis.Redis:
    """``connect`` for what cannot run without a store: ``none`` is a ``ConfigError`` naming ``field``. Typed as
    the single-node client: a ``RedisCluster`` (cluster URL) answers the same commands."""
    r = connect(url, timeout_s, field=field)
    if r is None:
        raise ConfigError(f"needs an online store (a redis:// or valkey:// URL), got {url!r}", field=field)
    return cast("aioredis.Redis", r)
