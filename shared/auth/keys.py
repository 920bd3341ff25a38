"""API keys: made and revoked by ``strata keys``, stored hashed in one JSON file (``auth.keys_file``).

A key is ``strata_<id>_<secret>``: ``id`` (12 hex digits) names its record, ``secret`` is 32 random bytes
(base64url). The file keeps the SHA-256 of the whole key, never the key: the secret has 256 bits of entropy,
so a fast hash is enough (a slow password hash buys nothing against guessing and would cost every request).
Revoking keeps the record (who had which key, and when it stopped) with ``revoked`` set.

A PoP key (``pop`` set) belongs to the edge worker of one point of presence: all its requests come from the
PoP's few addresses, so the per-address rate limit applies to the client address the worker forwards
(``X-Forwarded-For``), which is trusted from PoP keys only.

Writers (the CLI) hold an exclusive ``flock`` on ``<file>.lock`` and replace the file atomically (mode 0600),
so serving processes that re-read it never see half a file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from strata.shared.auth.scopes import SCOPES
from strata.shared.errors import ConfigError

PREFIX = "strata_"
ID_HEX = 12
FILE_VERSION = 1
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEY = re.compile(r"strata_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    sha256: str                   # hex digest of the whole key
    created: str                  # RFC 3339 UTC
    pop: str | None = None        # the PoP whose edge worker holds it
    name: str | None = None       # a label for people
    revoked: str | None = None    # RFC 3339 UTC, once revoked

    @property
    def active(self) -> bool:
        return self.revoked is None


def key_digest(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def key_id_of(key: str) -> str | None:
    """The record id a well-formed key names, else None."""
    m = _KEY.fullmatch(key)
    return m.group(1) if m else None


def check_tenant(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise ValueError(f"tenant must be 1..128 of A-Z a-z 0-9 . _ - (starting with a letter or digit), "
                         f"got {tenant!r}")
    return tenant


def read_records(path: str | Path) -> list[KeyRecord]:
    """Every record of the file (none when it does not exist). A file that is not a keys file is a
    ``ConfigError`` naming ``auth.keys_file``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read keys file {p}: {exc.strerror}", field="auth.keys_file") from None
    try:
        doc = orjson.loads(raw)
        if doc.get("version") != FILE_VERSION:
            raise ValueError(f"version must be {FILE_VERSION}")
        return [KeyRecord(**{**r, "scopes": tuple(r["scopes"])}) for r in doc["keys"]]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{p} is not a strata keys file: {exc}", field="auth.keys_file") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, records: list[KeyRecord]) -> None:
    doc = {"version": FILE_VERSION, "keys": [asdict(r) for r in records]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_key(path: str | Path, tenant: str, scopes: tuple[str, ...], *, pop: str | None = None,
               name: str | None = None) -> tuple[str, KeyRecord]:
    """Make a key, store its hash; returns (the key, its record). The key is never stored."""
    check_tenant(tenant)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, got {', '.join(scopes) or 'none'}")
    if pop is not None and not _TENANT.fullmatch(pop):
        raise ValueError(f"pop must be 1..128 of A-Z a-z 0-9 . _ -, got {pop!r}")
    p = Path(path)
    with _locked(p):
        records = read_records(p)
        taken = {r.id for r in records}
        key_id = secrets.token_hex(ID_HEX // 2)
        while key_id in taken:
            key_id = secrets.token_hex(ID_HEX // 2)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        key = f"{PREFIX}{key_id}_{secret}"
        record = KeyRecord(key_id, tenant, tuple(scopes), key_digest(key), _now(), pop, name)
        _write(p, [*records, record])
    return key, record


def revoke_key(path: str | Path, key_id: str) -> KeyRecord:
    """Mark a key revoked (its record stays); a ``KeyError`` when no such key exists."""
    p = Path(path)
    with _locked(p):
        records = read_records(p)
        for i, r in enumerate(records):
            if r.id == key_id:
                if r.revoked is None:
                    records[i] = r = KeyRecord(**{**asdict(r), "revoked": _now()})
                    _write(p, records)
                return r
    raise KeyError(key_id)
