"""The error of a run that cannot start or go on (imported by every training module)."""

from __future__ import annotations

__all__ = ["TrainingError"]


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message for the CLI)."""
