"""The error every weights module raises (torch-free, so commands can name it cheaply)."""

from __future__ import annotations

__all__ = ["WeightsError"]


class WeightsError(ValueError):
    """A weights file or name that cannot be used; the message is one line for the CLI."""
