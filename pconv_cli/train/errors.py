"""The error of a run that cannot start or go on (imported by every training module)."""

from __future__ import annotations

__all__ = ["TrainingError", "UsageError"]


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message for the CLI; exit code 1)."""


class UsageError(TrainingError):
    """Options that do not fit together or a value the model family refuses (exit code 2)."""
