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
) -> Progress:
    """``label | bar | done/total | elapsed | ETA`` plus one text column per task field.

    ``fields`` are column templates such as ``"loss {task.fields[loss]}"``. The bar
    goes to stderr so stdout keeps only results; with ``hide_when_piped`` it is
    not drawn when stderr is not a terminal (logs stay clean).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(field) for field in fields),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=hide_when_piped and not console.is_terminal,
    )
