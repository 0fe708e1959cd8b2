"""The error of a run that cannot start or go on (imported by every training module)."""

from __future__ import annotations

from pconv_cli.errors import PconvError
from pconv_cli.errors import UsageError as BaseUsageError

__all__ = ["TrainingError", "UsageError"]


class TrainingError(PconvError, RuntimeError):
    """A run that cannot start or go on (one-line message for the CLI; exit code 1)."""


class UsageError(TrainingError, BaseUsageError):
    """Options that do not fit together or a value the model family refuses (exit code 2)."""

    exit_code = 2
