"""Signed impression ids: a tier that serves an answer names it with an id only it (and the processor) can
make, so only impressions that were really served, and clicks on them by the session they were served to,
move bandit counts.

    i1.<ts>.<nonce>.<session tag>.<items tag>
    session tag = HMAC-SHA256(secret, "s" | tenant | session | ts | nonce)[:9]     (hex, 18 characters)
    items tag   = HMAC-SHA256(secret, "i" | session tag | item ids in order)[:9]

``ts`` is the serving time (epoch ms, hex), ``nonce`` a random per-process prefix and a counter (unique; the
MAC, not the nonce, is what cannot be guessed). The HMAC's padded key states are computed once (two SHA-256
copies per tag: about 1 microsecond). A click carries its session and the
impression id but not the items, so the processor checks it by the session tag; an impression event carries the
items and is checked by both. Ids older than the join window are expired; one impression id counted twice (a
replay under a new event id) is caught by the processor's state, not here. 72-bit tags: a forger has one
chance in 2^72 per try, and every try is dead-lettered and counted.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from collections.abc import Sequence

VERSION = "i1"
TAG_BYTES = 9
_SEP = "\x1f"


class ImpressionSigner:
    __slots__ = ("_inner", "_outer", "_prefix", "_seq")

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the impression secret needs at least 16 bytes")
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))     # HMAC (RFC 2104) with its pads hashed once
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self._prefix = os.urandom(4).hex()
        self._seq = itertools.count(1)

    def _mac(self, msg: bytes) -> str:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES].hex()

    def _session_tag(self, tenant: str, session_id: str, tsx: str, nonce: str) -> str:
        return self._mac(f"s{_SEP}{tenant}{_SEP}{session_id}{_SEP}{tsx}{_SEP}{nonce}".encode())

    def _items_tag(self, session_tag: str, items: Sequence[str]) -> str:
        return self._mac(f"i{_SEP}{session_tag}{_SEP}{_SEP.join(items)}".encode())

    def sign(self, tenant: str, session_id: str, items: Sequence[str], ts_ms: int) -> str:
        tsx = f"{ts_ms:x}"
        nonce = f"{self._prefix}{next(self._seq):x}"
        s_tag = self._session_tag(tenant, session_id, tsx, nonce)
        return f"{VERSION}.{tsx}.{nonce}.{s_tag}.{self._items_tag(s_tag, items)}"

    def check(self, impression_id: str, tenant: str, session_id: str,
              items: Sequence[str] | None = None) -> int | None:
        """The id's serving time (epoch ms) when it was made by a tier for this tenant and session (and, given
        ``items``, for exactly these items in this order); None when it was not."""
        parts = impression_id.split(".")
        if len(parts) != 5 or parts[0] != VERSION:
            return None
        _, tsx, nonce, s_tag, i_tag = parts
        try:
            ts = int(tsx, 16)
        except ValueError:
            return None
        if not hmac.compare_digest(s_tag, self._session_tag(tenant, session_id, tsx, nonce)):
            return None
        if items is not None and not hmac.compare_digest(i_tag, self._items_tag(s_tag, items)):
            return None
        return ts


def signer_from_settings(auth) -> ImpressionSigner | None:
    """The tiers sign whenever a secret is set (``auth.impression_secret``); None otherwise."""
    secret = auth.impression_secret
    if secret is None or not secret.get_secret_value():
        return None
    return ImpressionSigner(secret.get_secret_value())
