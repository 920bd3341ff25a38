"""Errors of the local launcher. Rooted in ``shared.errors.StrataError`` so the CLI maps them in one place."""

from __future__ import annotations

from strata.shared.errors import StrataError


class EngineMissing(StrataError):
    """An embedded engine's binary is not installed; the message says which extra to install."""

    code = "engine_missing"


class ProcessFailed(StrataError):
    """A child process exited early or never became ready; the message carries the tail of its output."""

    code = "process_failed"
    retriable = True
