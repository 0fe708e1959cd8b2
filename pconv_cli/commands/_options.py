"""Option validators and conventions every command shares (torch-free: help must stay fast).

Usage errors (a bad value) are reported by typer as one line with exit code 2,
before anything runs or is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.core import TyperCommand, TyperGroup

from pconv_cli.data.mask_kinds import MASK_KINDS

__all__ = [
    "DEVICE_METAVAR",
    "FLAG",
    "MARKUP",
    "SIGNALS",
    "Command",
    "Group",
    "check_signals",
    "command_group",
    "device_value",
    "masks_value",
    "non_negative_float",
    "positive_float",
    "ratio_range_value",
    "terminate",
]

MARKUP = "markdown"
"""Help text markup: brackets like ``[default: 1]`` and ``path [label]`` stay literal."""

FLAG = {"metavar": ""}
"""Options of boolean flags: no ``<bool>`` placeholder in the help."""


def command_group(name: str, help: str, *, cls: type[TyperGroup] | None = None) -> typer.Typer:
    """A pconv command group (``pconv`` itself, ``pconv weights``, ...): no completion,
    ``-h``, plain exceptions, markdown help; ``cls`` defaults to :class:`Group`."""
    return typer.Typer(
        cls=cls or Group,
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        rich_markup_mode=MARKUP,
    )


class _HelpFlagWithoutPlaceholder:
    """``--help`` shows no ``<bool>`` placeholder either."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


SIGNALS: list[int] = []
"""Signals (SIGTERM) the app turned into Ctrl-C. Python drops an exception raised while a
``__del__`` runs, so a KeyboardInterrupt can vanish: long loops call :func:`check_signals`
(the progress bars do) and a command that returns after one still exits 130."""


def terminate(signum: int, frame: object) -> None:
    """The SIGTERM handler of the app: Ctrl-C's KeyboardInterrupt, remembered."""
    SIGNALS.append(signum)
    raise KeyboardInterrupt


def check_signals() -> None:
    """Raise KeyboardInterrupt again if a signal arrived (its first one may have been lost)."""
    if SIGNALS:
        raise KeyboardInterrupt


def _interrupted() -> Exception:
    import signal

    from pconv_cli.errors import Interrupted

    what = signal.Signals(SIGNALS[-1]).name if SIGNALS else "Ctrl-C"
    return Interrupted(f"interrupted by {what}; stopped cleanly, no partial file left")


class Command(_HelpFlagWithoutPlaceholder, TyperCommand):
    """The class of every pconv command: Ctrl-C and SIGTERM end it with one line (exit 130)."""

    def invoke(self, ctx):
        try:
            result = super().invoke(ctx)
        except KeyboardInterrupt:
            raise _interrupted() from None
        if SIGNALS:
            raise _interrupted()
        return result


class Group(_HelpFlagWithoutPlaceholder, TyperGroup):
    """The class of every pconv command group."""


DEVICE_METAVAR = "[auto|cpu|cuda|cuda:N|mps]"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def positive_float(value: float | None) -> float | None:
    """A number > 0 (None passes: the option was not given)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def non_negative_float(value: float | None) -> float | None:
    """A number >= 0 (None passes)."""
    if value is not None and not value >= 0:
        raise typer.BadParameter(f"must be >= 0, got {value:g}")
    return value


def device_value(value: str | None) -> str | None:
    """``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N`` (availability is checked later)."""
    if value is not None and not _DEVICE.fullmatch(value.lower()):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return value


def ratio_range_value(value: str | None) -> str | None:
    """A hole-ratio range ``LO-HI`` with ``0 <= LO < HI <= 1``."""
    if value is None:
        return value
    from pconv_cli.data.masks import MaskError, parse_ratio_range

    try:
        parse_ratio_range(value)
    except MaskError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def masks_value(value: str | None) -> str | None:
    """A mask kind or an existing folder of mask files."""
    if value is None or value in MASK_KINDS or Path(value).is_dir():
        return value
    raise typer.BadParameter(
        f"{value!r} is neither a mask kind ({', '.join(MASK_KINDS)}) nor a folder"
    )
