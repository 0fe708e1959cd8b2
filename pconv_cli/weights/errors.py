"""The error every weights module raises (torch-free, so commands can name it cheaply)."""

from __future__ import annotations

from pconv_cli.errors import PconvError

__all__ = ["WeightsError"]


class WeightsError(PconvError, ValueError):
    """A weights file or name that cannot be used; the message is one line for the CLI."""
