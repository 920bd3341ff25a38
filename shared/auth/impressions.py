"""Signed impression ids: a tier that serves an answer names it with an id only it (and the processor) can
make, so only impressions that were really served, and clicks on them by the session they were served to,
move bandit counts.

    i4.<ts>.<nonce>.<session tag>.<items tag>
    items tag   = BLAKE2b-72(secret, D | "i" | tenant | session | item ids in order | "p" | priors)   (hex, 18 chars)
    session tag = BLAKE2b-72(secret, D | "s" | tenant | session | ts.nonce | items tag)
    (D a fixed domain prefix, "|" the unit separator; priors: the scorer's p behind each item as the impression
    event carries it (6 decimals), in integer millionths, comma-separated, or "-" when the event carries none)

BLAKE2b in its keyed mode is a MAC (RFC 7693), one call per tag. ``ts`` is the serving time (epoch ms, hex),
``nonce`` a random per-process prefix and a counter (unique; the MAC, not the nonce, is what cannot be
guessed). The items tag depends on the answer only, so a cached answer keeps it (``prepare``) and each
serving of it costs one MAC (``sign_prepared``): the session tag, which covers the items tag. A click carries its
session and the impression id but not the items, so the processor checks it by the session tag (over the items
tag the id carries); an impression event carries the items and the priors and is checked by both, so whoever
posts an impression event first cannot change the expected clicks (``prior``) the bandit sums. Ids older than
the join window are expired; one impression id counted twice (a replay under a new event id) is caught by the
processor's state, not here. 72-bit tags: a forger has one chance in 2^72 per try, and every try is
dead-lettered and counted.

Ids of the previous formats still verify, so clicks on answers served before an upgrade count for the rest of
their join window: ``i3`` (the priors as ``repr`` of each float: ~4x the instructions of the integers, about a fifth
of what auth added to a cache-miss request), ``i2`` (the items tag without the priors) and ``i1`` (HMAC-SHA256, the
items tag over the session tag). An ``i4`` impression whose priors are not 6-decimal values (as no tier serves
them) does not verify: millionths that match are then the very priors served.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from collections.abc import Sequence
from itertools import repeat
from operator import mul

VERSION = "i4"
TAG_BYTES = 9
_SEP = "\x1f"
_V3 = "i3"
_V2 = "i2"
_V1 = "i1"
NO_PRIOR = "-"
_DOMAIN = b"strata-impression-id\x1f"


class ImpressionSigner:
    __slots__ = ("_keyed", "_key", "_prefix", "_seq")

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the impression secret needs at least 16 bytes")
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        # Keyed BLAKE2b (keys of up to 64 bytes) holds the padded key as its first block until more input comes;
        # the domain prefix makes it compress that block once here, so a copy MACs a short message in one block.
        self._keyed = hashlib.blake2b(_DOMAIN, key=key, digest_size=TAG_BYTES)
        self._key = key                                 # i1 ids: HMAC-SHA256 with it (verified only)
        self._prefix = os.urandom(4).hex()
        self._seq = itertools.count(1)

    def _mac(self, msg: str) -> str:
        h = self._keyed.copy()
        h.update(msg.encode())
        return h.hexdigest()

    def items_tag(self, tenant: str, session_id: str, items: Sequence[str],
                  prior: Sequence[float] | None = None) -> str:
        """The tag of an answer's items and their priors (as its impression event carries them), for this tenant
        and session."""
        return self._mac(f"i{_SEP}{tenant}{_SEP}{session_id}{_SEP}{_SEP.join(items)}{_SEP}p{_SEP}"
                         f"{NO_PRIOR if prior is None else _millionths(prior)}")

    def _items_tag_v3(self, tenant: str, session_id: str, items: Sequence[str],
                      prior: Sequence[float] | None) -> str:
        return self._mac(f"i{_SEP}{tenant}{_SEP}{session_id}{_SEP}{_SEP.join(items)}{_SEP}p{_SEP}"
                         f"{NO_PRIOR if prior is None else ','.join([repr(float(p)) for p in prior])}")

    def prepare(self, tenant: str, session_id: str, items: Sequence[str],
                prior: Sequence[float] | None = None) -> tuple[bytes, str, bytes]:
        """What every serving of one answer signs, made once (a cached answer keeps it): the session tag's
        message before and after the serving's own part, and the items tag."""
        i_tag = self.items_tag(tenant, session_id, items, prior)
        return f"s{_SEP}{tenant}{_SEP}{session_id}{_SEP}".encode(), i_tag, f"{_SEP}{i_tag}".encode()

    def sign_prepared(self, prepared: tuple[bytes, str, bytes], ts_ms: int) -> str:
        """A fresh id for one serving of a prepared answer: one MAC."""
        own = f"{ts_ms:x}.{self._prefix}{next(self._seq):x}"          # <ts>.<nonce>
        h = self._keyed.copy()
        h.update(prepared[0] + own.encode() + prepared[2])
        return f"{VERSION}.{own}.{h.hexdigest()}.{prepared[1]}"

    def sign(self, tenant: str, session_id: str, items: Sequence[str], ts_ms: int,
             prior: Sequence[float] | None = None) -> str:
        return self.sign_prepared(self.prepare(tenant, session_id, items, prior), ts_ms)

    def check(self, impression_id: str, tenant: str, session_id: str,
              items: Sequence[str] | None = None, prior: Sequence[float] | None = None) -> int | None:
        """The id's serving time (epoch ms) when it was made by a tier for this tenant and session (and, given
        ``items``, for exactly these items in this order with exactly these priors, None for none); None when it
        was not."""
        parts = impression_id.split(".")
        if len(parts) != 5:
            return None
        version, tsx, nonce, s_tag, i_tag = parts
        try:
            ts = int(tsx, 16)
        except ValueError:
            return None
        if version in (VERSION, _V3, _V2):
            if not hmac.compare_digest(s_tag, self._mac(f"s{_SEP}{tenant}{_SEP}{session_id}{_SEP}{tsx}.{nonce}{_SEP}{i_tag}")):
                return None
            if items is not None:
                if version == VERSION:
                    if prior is not None and not all(round(p * 1e6) / 1e6 == p for p in prior):
                        return None             # not as served: the millionths alone would hide the difference
                    made = self.items_tag(tenant, session_id, items, prior)
                elif version == _V3:
                    made = self._items_tag_v3(tenant, session_id, items, prior)
                else:
                    made = self._items_tag_v2(tenant, session_id, items)
                if not hmac.compare_digest(i_tag, made):
                    return None
            return ts
        if version == _V1:
            if not hmac.compare_digest(s_tag, self._hmac(f"s{_SEP}{tenant}{_SEP}{session_id}{_SEP}{tsx}{_SEP}{nonce}")):
                return None
            if items is not None and not hmac.compare_digest(i_tag, self._hmac(f"i{_SEP}{s_tag}{_SEP}"
                                                                               f"{_SEP.join(items)}")):
                return None
            return ts
        return None

    def _items_tag_v2(self, tenant: str, session_id: str, items: Sequence[str]) -> str:
        return self._mac(f"i{_SEP}{tenant}{_SEP}{session_id}{_SEP}{_SEP.join(items)}")

    def _hmac(self, msg: str) -> str:
        return hmac.digest(self._key, msg.encode(), "sha256")[:TAG_BYTES].hex()


def _millionths(prior: Sequence[float]) -> str:
    """``round(p * 1e6)`` of each prior, comma-separated (iterated in C: this is on every cache miss)."""
    return ",".join(map(str, map(round, map(mul, prior, repeat(1e6)))))


def signer_from_settings(auth) -> ImpressionSigner | None:
    """The tiers sign whenever a secret is set (``auth.impression_secret``); None otherwise."""
    secret = auth.impression_secret
    if secret is None or not secret.get_secret_value():
        return None
    return ImpressionSigner(secret.get_secret_value())
