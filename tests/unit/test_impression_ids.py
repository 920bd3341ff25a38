"""Signed impression ids (``shared.auth.impressions``): what verifies, what does not, and the cached answer's
one-MAC path."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from strata.shared.auth.impressions import ImpressionSigner

SECRET = "s" * 32
ITEMS = ("A", "B", "C")


def test_an_id_verifies_for_its_tenant_session_and_items_only() -> None:
    s = ImpressionSigner(SECRET)
    iid = s.sign("t1", "S", ITEMS, 1_700_000_000_000)
    assert iid.startswith("i4.")
    assert s.check(iid, "t1", "S") == 1_700_000_000_000             # a click: no items
    assert s.check(iid, "t1", "S", ITEMS) == 1_700_000_000_000      # an impression: its items, in order
    assert s.check(iid, "t2", "S") is None
    assert s.check(iid, "t1", "T") is None
    assert s.check(iid, "t1", "S", ("A", "C", "B")) is None
    assert s.check(iid, "t1", "S", ("A", "B")) is None
    assert ImpressionSigner("x" * 32).check(iid, "t1", "S") is None    # another secret


def test_no_part_of_an_id_can_be_changed() -> None:
    s = ImpressionSigner(SECRET)
    iid = s.sign("t1", "S", ITEMS, 1_700_000_000_000)
    version, tsx, nonce, s_tag, i_tag = iid.split(".")
    other_items = s.sign("t1", "S", ("X", "Y"), 1_700_000_000_000).split(".")[4]
    for forged in (f"{version}.{int(tsx, 16) + 1:x}.{nonce}.{s_tag}.{i_tag}",      # another time
                   f"{version}.{tsx}.{nonce}0.{s_tag}.{i_tag}",                    # another nonce
                   f"{version}.{tsx}.{nonce}.{s_tag}.{other_items}",               # a real tag of other items
                   f"{version}.{tsx}.{nonce}.{s_tag[:-1]}{'1' if s_tag[-1] == '0' else '0'}.{i_tag}",
                   f"i9.{tsx}.{nonce}.{s_tag}.{i_tag}", f"{version}.zz.{nonce}.{s_tag}.{i_tag}", "i2.1.2.3",
                   ""):
        assert s.check(forged, "t1", "S") is None, forged


def test_a_cached_answer_is_prepared_once_and_each_serving_gets_its_own_id() -> None:
    s = ImpressionSigner(SECRET)
    prepared = s.prepare("t1", "S", ITEMS)
    a, b = (s.sign_prepared(prepared, 1_700_000_000_000) for _ in range(2))
    assert a != b and a.split(".")[4] == b.split(".")[4] == s.items_tag("t1", "S", ITEMS)
    assert s.check(a, "t1", "S", ITEMS) and s.check(b, "t1", "S", ITEMS)
    assert s.sign("t1", "S", list(ITEMS), 5).split(".")[4] == prepared[1]


def _v1(secret: str, tenant: str, session: str, items: tuple[str, ...], ts_ms: int, nonce: str) -> str:
    """The previous format, made as it was (HMAC-SHA256, the items tag over the session tag)."""
    import hmac

    def mac(msg: str) -> str:
        return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).digest()[:9].hex()

    sep = "\x1f"
    tsx = f"{ts_ms:x}"
    s_tag = mac(f"s{sep}{tenant}{sep}{session}{sep}{tsx}{sep}{nonce}")
    return f"i1.{tsx}.{nonce}.{s_tag}.{mac(f'i{sep}{s_tag}{sep}{sep.join(items)}')}"


def test_an_impression_verifies_only_with_the_priors_it_was_served_with() -> None:
    """The scorer's p behind each item (the bandit's expected clicks) is signed as the impression event carries
    it: whoever posts the impression first cannot change it, nor drop it."""
    s = ImpressionSigner(SECRET)
    prior = [0.125, 0.5, 0.031337]
    iid = s.sign("t1", "S", ITEMS, 1_700_000_000_000, prior)
    assert s.check(iid, "t1", "S", ITEMS, prior) == 1_700_000_000_000
    assert s.check(iid, "t1", "S", ITEMS, [float(x) for x in (0.125, 0.5, 0.031337)]) == 1_700_000_000_000
    assert s.check(iid, "t1", "S") == 1_700_000_000_000                       # a click needs neither
    for other in ([0.0, 0.5, 0.031337], [0.125, 0.5], [0.125, 0.5, 0.031338], None):
        assert s.check(iid, "t1", "S", ITEMS, other) is None, other
    bare = s.sign("t1", "S", ITEMS, 1_700_000_000_000)                         # served without priors
    assert s.check(bare, "t1", "S", ITEMS) and s.check(bare, "t1", "S", ITEMS, prior) is None


def _blake2b_id(version: str, secret: str, tenant: str, session: str, items: tuple[str, ...], ts_ms: int,
                nonce: str, prior: list[float] | None = None) -> str:
    """An id of a previous keyed-BLAKE2b format, made as it was: ``i2`` (the items tag over tenant, session and
    items) or ``i3`` (and the priors, ``repr`` of each float)."""
    sep = "\x1f"

    def mac(msg: str) -> str:
        return hashlib.blake2b(b"strata-impression-id\x1f" + msg.encode(), key=secret.encode(), digest_size=9).hexdigest()

    tsx = f"{ts_ms:x}"
    signed = f"i{sep}{tenant}{sep}{session}{sep}{sep.join(items)}"
    if version == "i3":
        signed += f"{sep}p{sep}{','.join(repr(p) for p in prior or ())}"
    i_tag = mac(signed)
    return f"{version}.{tsx}.{nonce}.{mac(f's{sep}{tenant}{sep}{session}{sep}{tsx}.{nonce}{sep}{i_tag}')}.{i_tag}"


def test_priors_are_signed_in_millionths_and_only_served_values_verify() -> None:
    """The priors' text is integer millionths (a quarter of the instructions of each float's repr on a cache-miss
    request); priors that are not 6-decimal values, as no tier serves them, do not verify even where their
    millionths match."""
    s = ImpressionSigner(SECRET)
    prior = [0.125, 0.5, 0.031337, 1.0, 0.0, 1e-06]
    items = ("A", "B", "C", "D", "E", "F")
    iid = s.sign("t1", "S", items, 1_700_000_000_000, prior)
    assert s.items_tag("t1", "S", items, prior) == s._mac(
        "i\x1ft1\x1fS\x1fA\x1fB\x1fC\x1fD\x1fE\x1fF\x1fp\x1f125000,500000,31337,1000000,0,1")
    assert s.check(iid, "t1", "S", items, prior) == 1_700_000_000_000
    assert s.check(iid, "t1", "S", items, [0.125, 0.5, 0.0313371, 1.0, 0.0, 1e-06]) is None


def test_ids_of_the_previous_formats_still_verify() -> None:
    """Clicks on answers served before an upgrade count for the rest of their join window."""
    s = ImpressionSigner(SECRET)
    prior = [0.125, 0.5, 0.031337]
    v3 = _blake2b_id("i3", SECRET, "t1", "S", ITEMS, 1_700_000_000_000, "abcd01", prior)
    assert s.check(v3, "t1", "S") == 1_700_000_000_000
    assert s.check(v3, "t1", "S", ITEMS, prior) == 1_700_000_000_000
    assert s.check(v3, "t1", "S", ITEMS, [0.125, 0.5, 0.031338]) is None and s.check(v3, "t1", "S", ITEMS) is None
    v2 = _blake2b_id("i2", SECRET, "t1", "S", ITEMS, 1_700_000_000_000, "abcd01")
    assert s.check(v2, "t1", "S") == 1_700_000_000_000
    assert s.check(v2, "t1", "S", ITEMS, [0.5, 0.5, 0.5]) == 1_700_000_000_000   # (i2 did not sign priors)
    assert s.check(v2, "t1", "T") is None and s.check(v2, "t1", "S", ("A",)) is None
    old = _v1(SECRET, "t1", "S", ITEMS, 1_700_000_000_000, "abcd01")
    assert s.check(old, "t1", "S") == 1_700_000_000_000
    assert s.check(old, "t1", "S", ITEMS) == 1_700_000_000_000
    assert s.check(old, "t1", "T") is None and s.check(old, "t1", "S", ("A",)) is None


@pytest.mark.parametrize("secret", ["short", b"k" * 15])
def test_a_short_secret_is_refused(secret) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ImpressionSigner(secret)


def test_a_long_secret_is_hashed_to_a_blake2b_key() -> None:
    s = ImpressionSigner("L" * 200)
    assert s.check(s.sign("t", "S", ITEMS, next(itertools.count(7))), "t", "S", ITEMS) == 7
