"""The rich progress bar every command shows on stderr (imported inside commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def progress_bar(
    label: str,
    *fields: str,
    console: Console | None = None,
    transient: bool = True,
    hide_when_piped: bool = True,
    unit: str | None = None,
) -> Progress:
    """``label | bar | done/total | elapsed | ETA`` plus one text column per task field.

    With ``unit`` (e.g. ``"img"``) a column shows the speed in units per second.

    ``fields`` are column templates such as ``"loss {task.fields[loss]}"``. The bar
    goes to stderr so stdout keeps only results; with ``hide_when_piped`` it is
    not drawn when stderr is not a terminal (logs stay clean).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} {unit}/s" if speed else f"- {unit}/s")

    from pconv_cli.commands._options import check_signals

    class SignalAwareProgress(Progress):
        def advance(self, task_id, advance: float = 1) -> None:
            check_signals()  # a SIGTERM whose KeyboardInterrupt was lost stops here
            super().advance(task_id, advance)

    console = console or Console(stderr=True)
    return SignalAwareProgress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(field) for field in fields),
        *([RateColumn()] if unit else []),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=hide_when_piped and not console.is_terminal,
    )
