"""Origin errors (rooted in ``shared.errors``; the one mapper turns them into answers)."""

from __future__ import annotations

from strata.shared.errors import ServiceUnavailable


class GuardrailUnavailable(ServiceUnavailable):
    """A guardrail stage could not run: the answer is blocked (503), never served unchecked."""

    code = "guardrail_unavailable"
