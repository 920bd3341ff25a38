"""What the origin makes of the profile fields the stream processor writes."""

from __future__ import annotations

from origin.profiles import _stated


def test_stated_preferences_parse_categories_then_brands_and_survive_garbage() -> None:
    assert _stated(b'{"categories": ["toys", "books"], "brands": ["Norvik", "toys"]}') == ("toys", "books", "Norvik")
    assert _stated(None) == () and _stated(b"not json") == () and _stated(b"[1, 2]") == ()
