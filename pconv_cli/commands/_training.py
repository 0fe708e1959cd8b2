"""The training runner every training command shares: options -> run -> report.

Resolves a :class:`~pconv_cli.train.config.TrainConfig`, trains in this process or
in launched workers (``--gpus``/``--nproc``), shows progress with rich, and turns
expected failures into one-line errors (exit 1; Ctrl-C: 130).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

__all__ = ["RichProgress", "run_training"]


def run_training(
    overrides: dict[str, Any], *, resume: bool, finetune: bool = False, command: str = "pconv train"
) -> None:
    """Resolve the options, train (here or in launched workers) and report, for any task;
    ``command`` is what the user types to resume (named in hints)."""
    from rich.console import Console
    from rich.markup import escape

    from pconv_cli.errors import Interrupted, PconvError
    from pconv_cli.train.config import ignored_on_resume, resolve_config
    from pconv_cli.train.distributed import LaunchError
    from pconv_cli.train.loop import train

    console = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line
    out = overrides["out"]
    try:
        config = resolve_config(overrides, resume=resume, finetune=finetune)
        if config.out != out and not resume:  # --stage 2 continuing the stage-1 run in --out
            out = config.out
            console.print(f"stage {config.stage} starts from {config.init}, writing to {out}")
        if resume:
            for name in ignored_on_resume(overrides):
                console.print(f"note: --{name.replace('_', '-')} is ignored with --resume")
        if config.processes > 1 and "WORLD_SIZE" not in os.environ:
            summary = _launch_workers(config)
        else:
            with RichProgress(console) as progress:
                summary = train(config, progress)
    except Interrupted as exc:  # Ctrl-C or SIGTERM, in this process or in launched workers
        console.print(
            f"[yellow]{escape(str(exc))}[/]; continue with: "
            f"{command} --out {escape(out)} --resume",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except PconvError as exc:
        console.print(f"[red]Error:[/] {escape(str(exc))}", highlight=False)
        if isinstance(exc, LaunchError) and any(Path(out).glob("checkpoints/*")):
            console.print(f"resume with: {command} --out {escape(out)} --resume")
        raise typer.Exit(exc.exit_code) from None
    if int(os.environ.get("RANK", 0)) == 0:
        console.print(
            f"[green]done[/]: step {summary['step']}, weights in {summary['checkpoint']}"
            + (
                f", {summary['skipped_images']} unreadable images skipped"
                if summary.get("skipped_images")
                else ""
            )
        )


def _launch_workers(config) -> dict[str, Any]:
    """``--gpus N`` / ``--nproc N``: N local workers through torch's elastic launcher."""
    from pconv_cli.train.distributed import check_world_size, launch
    from pconv_cli.train.loop import launch_config, preflight, run_worker, training_device

    device = training_device(config)
    check_world_size(config.processes, device)
    preflight(config)
    data, extensions = launch_config(config)
    return launch(run_worker, (data, _rich_callbacks, extensions), processes=config.processes)


def _rich_callbacks() -> RichProgress:
    """Progress display for rank 0 of a launched run (built inside the worker)."""
    from rich.console import Console

    return RichProgress(Console(stderr=True, soft_wrap=True))


class RichProgress:
    """TrainCallbacks drawing a rich progress bar (step, loss, images/s, ETA)."""

    def __init__(self, console):
        from pconv_cli.commands._progress import progress_bar

        self.console = console
        self.progress = progress_bar(
            "train",
            "loss {task.fields[loss]}",
            "{task.fields[speed]}",
            console=console,
            transient=False,
            hide_when_piped=False,
        )
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        if self.task is not None:  # the bar only exists once training has started
            self.progress.stop()
            self.task = None

    # TrainCallbacks interface
    def on_start(self, info: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]pconv train[/] {info['arch']} on {info['device']}: {info['data']}, "
            f"batch {info['batch']} (global {info['global_batch']}), "
            f"lr {info['lr']:g}, {info['precision']}, {info['parameters']:,} parameters "
            f"({info['trainable']:,} trainable), start: {info['init_from']} at step "
            f"{info['start_step']}"
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=info["steps"], completed=info["start_step"], loss="-", speed=""
        )

    def on_step(self, step: int, loss: float) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.4f}")

    def on_log(self, record: dict[str, Any]) -> None:
        speed = f"{record['images_per_s']:.1f} img/s"
        if "top1" in record:  # classifiers: the running training accuracy
            speed += f", top-1 {record['top1']:.3f}"
        self.progress.update(self.task, speed=speed)

    def on_message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)
