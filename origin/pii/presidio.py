"""Presidio's analyzer, imported without torch and transformers.

``presidio_analyzer``'s package imports every NLP engine it has, and its Hugging Face engine imports transformers
(and with it torch) whenever they are installed, as they are in a venv that also trains: 6.6 s of every origin
start and torch in a serving process (measured 2026-12-08, 2-core VM: ``import presidio_analyzer`` 6.6 s with
them, 1.5 s without). The origin's recognizers are patterns (no spaCy model, no transformers), so the first import
runs with both marked absent (a ``None`` in ``sys.modules`` makes ``import`` raise ImportError, which Presidio and
thinc catch as "not installed"); the marks are removed right after, so anything else in the process that imports
torch later gets it. Import Presidio's names from here, not from ``presidio_analyzer``.
"""

from __future__ import annotations

import sys

HIDDEN = ("transformers", "torch")

_marked = [name for name in HIDDEN if name not in sys.modules]
for _name in _marked:
    sys.modules[_name] = None  # type: ignore[assignment]  # "not installed" while Presidio imports
try:
    from presidio_analyzer import (
        AnalyzerEngine,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
        RecognizerResult,
        predefined_recognizers,
    )
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
finally:
    for _name in _marked:
        if _name in sys.modules and sys.modules[_name] is None:
            del sys.modules[_name]

__all__ = ["AnalyzerEngine", "EntityRecognizer", "NoOpNlpEngine", "Pattern", "PatternRecognizer",
           "RecognizerRegistry", "RecognizerResult", "predefined_recognizers"]
