"""The check every front door runs before a request reaches its handler: who is calling (the key), may it
(the route's scope), how often (the limits). Then ``bind_tenant`` makes the key's tenant the request's.

    admit(headers, client, scope) -> Caller | None     (None: auth is off)
        401 no key / not a key / unknown or revoked key (``WWW-Authenticate: Bearer``)
        403 the key lacks the route's scope
        429 the client address's or the key's bucket is empty (``Retry-After``)

A front door without a gate (``None``: auth and every limit off) skips all of it. Keys are verified once per
distinct ``Authorization`` value and remembered by its raw bytes (the file's SHA-256 compare, constant time); the keys file is re-read
when it changes (``auth.reload_s``), so ``strata keys revoke`` holds within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from strata.shared.auth.keys import KeyRecord, key_digest, key_id_of, read_records
from strata.shared.auth.limits import Limiter
from strata.shared.auth.shared_limits import SharedBuckets
from strata.shared.errors import ConfigError, Forbidden, Unauthorized
from strata.shared.online_store.client import configured
from strata.shared.serving.metrics import Instruments
from strata.shared.serving.tasks import stop_task

logger = logging.getLogger(__name__)
MEMO_MAX = 10_000
_FIND = object()        # admit(): find the Authorization value in the headers


class Caller:
    """Who a request comes from, by its key."""

    __slots__ = ("tenant", "key_id", "scopes", "pop", "token", "bucket")

    def __init__(self, tenant: str, key_id: str, scopes: frozenset[str], pop: str | None, token: bytes) -> None:
        self.tenant = tenant
        self.key_id = key_id
        self.scopes = scopes
        self.pop = pop
        self.token = token          # the bearer value, for a tier that calls another on this caller's behalf
        self.bucket = f"{tenant}:{key_id}"     # its rate-limit bucket (``shared_limits.bucket_key``)

    def __repr__(self) -> str:     # never the key
        return f"Caller(tenant={self.tenant!r}, key_id={self.key_id!r}, pop={self.pop!r})"


class KeyRing:
    """The keys file as the serving side reads it: id -> record, re-read when the file changes."""

    def __init__(self, path: str | Path, reload_s: float = 2.0) -> None:
        self.path = Path(path)
        self.reload_s = reload_s
        if not self.path.is_file():
            raise ConfigError(f"auth is enabled but the keys file {self.path} does not exist; make a key with "
                              "'strata keys create --tenant T --scopes S --keys-file PATH'", field="auth.keys_file")
        self._stamp = self._stat()
        self._by_id = {r.id: r for r in read_records(self.path)}
        self._memo: dict[bytes, Caller] = {}
        self._next = time.monotonic() + reload_s

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def refresh(self) -> bool:
        """Re-read the file if it changed; a file that cannot be read keeps the keys as they were (logged)."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            records = read_records(self.path)
        except ConfigError as exc:
            logger.error("keys file not reloaded; the previous keys stay in force: %s", exc.reason)
            return False
        self._by_id = {r.id: r for r in records}
        self._memo = {}
        self._stamp = stamp
        logger.info("keys file reloaded", extra={"keys": sum(r.active for r in records)})
        return True

    def known(self, authorization: bytes | None) -> Caller | None:
        """The caller of an ``Authorization`` value verified before (by its raw bytes: no parsing, no hashing),
        else None. Re-reads the keys file when it changed (which forgets every verified value)."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.reload_s
            self.refresh()
        return self._memo.get(authorization) if authorization is not None else None

    def caller(self, token: bytes, authorization: bytes | None = None) -> Caller | None:
        """The caller of the key ``token``, None when it is not an active key of the file; remembered by
        ``authorization``, the raw header value it came in (else by the token)."""
        memo_key = token if authorization is None else authorization
        c = self.known(memo_key)
        if c is not None:
            return c
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            return None
        key_id = key_id_of(text)
        rec: KeyRecord | None = self._by_id.get(key_id) if key_id else None
        if rec is None or not rec.active or not hmac.compare_digest(rec.sha256, key_digest(token)):
            return None
        c = Caller(rec.tenant, rec.id, frozenset(rec.scopes), rec.pop, token)
        if len(self._memo) >= MEMO_MAX:
            self._memo.clear()
        self._memo[memo_key] = c
        return c


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            return value
    return None


def _bearer(authorization: bytes | None) -> bytes:
    if authorization is None:
        raise Unauthorized("an API key is required: 'Authorization: Bearer <key>'", field="Authorization")
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        raise Unauthorized("send the key as 'Authorization: Bearer <key>'", field="Authorization")
    return token.strip()


def _forwarded(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The last address of ``X-Forwarded-For`` (the one the PoP's worker appended)."""
    for name, value in headers:
        if name == b"x-forwarded-for":
            last = value.rsplit(b",", 1)[-1].strip()
            return last.decode("latin-1") if last else None
    return None


class Gate:
    """Authentication (when ``keys`` is given) and rate limits (when ``limiter`` is) for one process."""

    def __init__(self, keys: KeyRing | None, limiter: Limiter | None = None,
                 shared: SharedBuckets | None = None) -> None:
        self.keys = keys
        self.limiter = limiter
        self.shared = shared                # the limiter's buckets shared through the store (regional tiers)
        self._task: asyncio.Task | None = None
        self.metrics = Instruments("strata_auth")
        self.metrics.define("refused_total", "requests refused before their handler, by status and reason",
                            ("status", "reason"))
        self.metrics.define("admitted_total", "requests let through with a key, by the key's tenant", ("tenant",))
        self._admitted: dict[str, int] = {}
        self.metrics.gauge("admitted_total", lambda: [((t,), float(n)) for t, n in self._admitted.items()],
                           counter=True)

    def admit(self, headers: Iterable[tuple[bytes, bytes]], client: tuple | None, scope: str,
              authorization: bytes | None | object = _FIND) -> Caller | None:
        """``authorization``: the request's first ``Authorization`` value when the server read it already (None:
        there is none); by default it is looked up in ``headers``."""
        caller = None
        keys = self.keys
        if keys is not None:
            if authorization is _FIND:
                authorization = _authorization(headers)
            caller = keys.known(authorization)  # type: ignore[arg-type]
            if caller is None:
                try:
                    token = _bearer(authorization)  # type: ignore[arg-type]
                except Unauthorized:
                    self._refused(401, "no_key")
                    raise
                caller = keys.caller(token, authorization)  # type: ignore[arg-type]
                if caller is None:
                    self._refused(401, "unknown_key")
                    raise Unauthorized("unknown or revoked key", field="Authorization")
            if scope not in caller.scopes:
                self._refused(403, "scope")
                raise Forbidden(f"the key lacks scope {scope!r}", field="Authorization")
        limiter = self.limiter
        if limiter is not None:
            address = _forwarded(headers) if caller is not None and caller.pop is not None else None
            if address is None and client:
                address = client[0]
            try:
                limiter.charge(caller.bucket if caller is not None else None, address)
            except Exception:
                self._refused(429, "rate_limit")
                raise
        if caller is not None:
            self._admitted[caller.tenant] = self._admitted.get(caller.tenant, 0) + 1
        return caller

    async def start(self) -> None:
        if self.shared is not None and self.shared.configured:
            self._task = asyncio.create_task(self.shared.run(), name="rate-limit-sync")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self.shared is not None:
            await self.shared.close()

    def _refused(self, status: int, reason: str) -> None:
        self.metrics.inc("refused_total", (str(status), reason))

    def exposition(self) -> bytes:
        return self.metrics.exposition()


def bind_tenant(obj: object, caller: Caller | None) -> None:
    """The key's tenant is the request's: a body naming another tenant is refused (403), one naming none gets
    the key's. (A body that is not an object is left to the validator, which refuses it.)"""
    if caller is None or type(obj) is not dict:
        return
    named = obj.get("tenant")
    if named is None:
        obj["tenant"] = caller.tenant
    elif named != caller.tenant:
        shown = named[:48] if isinstance(named, str) else type(named).__name__
        raise Forbidden(f"the key belongs to tenant {caller.tenant!r}, not {shown!r}", field="tenant")


def gate_from_settings(settings, service: str, store_url: str | None = None) -> Gate | None:
    """The gate of one serving process, or None when auth and every limit are off. ``store_url`` (regional
    tiers): the limits are shared through it. With auth off the process says so once it serves
    (``warn_auth_off``, from its start: a command that fails before serving prints only its error)."""
    auth, rl = settings.auth, settings.rate_limit
    keys = None
    if auth.enabled:
        if auth.impression_secret is None or not auth.impression_secret.get_secret_value():
            raise ConfigError("auth is enabled: set the impression signing secret in the environment "
                              "(STRATA_AUTH__IMPRESSION_SECRET)", field="auth.impression_secret")
        keys = KeyRing(auth.keys_file, auth.reload_s)
    limiter = Limiter(rl.per_key_rps if auth.enabled else 0.0, rl.per_ip_rps, rl.burst) \
        if (rl.per_key_rps > 0 and auth.enabled) or rl.per_ip_rps > 0 else None
    if keys is None and limiter is None:
        return None
    shared = SharedBuckets(limiter, store_url, rl.sync_ms / 1000) \
        if limiter is not None and store_url is not None and configured(store_url) else None
    return Gate(keys, limiter, shared)


_warned: set[str] = set()


def warn_auth_off(service: str) -> None:
    """One WARNING per process and service: every route is open."""
    if service in _warned:
        return
    _warned.add(service)
    logger.warning("auth.enabled is false: every route of %s is open to anyone, and the tenant is whatever the "
                   "body says (set auth.enabled: true or STRATA_AUTH__ENABLED=true, with auth.keys_file; "
                   "see docs/security.md)", service)
