"""Hypothesis' regex strategies, with each character class built once per process.

Hypothesis builds a character class by walking every code point of its ranges (``regex._strategy``:
``for code_point in range(low, high + 1)``). The JSON Schemas of an item title and of a search query name every
control, format and private-use character (about 137,000 code points per class, up to three classes per
pattern), and schemathesis asks for a body strategy per operation, mode and media type: in the origin's fuzz test
twenty such builds took 72 of its 112 s (2026-12-08, 2-core VM). A class's strategy depends only on the class,
the regex flags and the alphabet, not on where in which pattern it stands, so it is kept per
(class, flags, alphabet) and reused. The tests that generate bodies from the schemas call ``install()``.
"""

from __future__ import annotations

from hypothesis.strategies._internal import regex as _regex

_original = _regex._strategy
_classes: dict[tuple, object] = {}


def _strategy(codes, context, is_unicode, *, alphabet):
    if type(codes) is tuple and codes[0] == _regex.sre.IN:
        key = (repr(codes[1]), int(context.flags), is_unicode, repr(alphabet))
        found = _classes.get(key)
        if found is None:
            found = _classes[key] = _original(codes, context, is_unicode, alphabet=alphabet)
        return found
    return _original(codes, context, is_unicode, alphabet=alphabet)


def install() -> None:
    """Idempotent; the recursion inside hypothesis goes through the module attribute, so it is cached too."""
    _regex._strategy = _strategy
