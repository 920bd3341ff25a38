"""What the origin makes of the profile fields the stream processor writes."""

from __future__ import annotations

from strata.origin.profiles import _stated


def test_stated_preferences_parse_categories_then_brands_and_survive_garbage() -> None:
    assert _stated(b'{"categories": ["toys", "books"], "brands": ["Norvik", "toys"]}') == ("toys", "books", "Norvik")
    assert _stated(None) == () and _stated(b"not json") == () and _stated(b"[1, 2]") == ()


def test_top_categories_from_the_processors_affinity_counters() -> None:
    from strata.origin.profiles import top_categories

    prof = {b"cat:toys": b"3", b"cat:garden": b"12", b"brand:A": b"40", b"v:20000": b"9", b"cat:bad": b"x",
            b"cat:hats": b"3", b"lt": b"\x00" * 8}
    assert top_categories(prof) == ("garden", "hats", "toys")
    assert top_categories(prof, n=1) == ("garden",)
    assert top_categories({}) == ()
