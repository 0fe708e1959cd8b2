"""``pconv train`` and ``pconv finetune``: thin wrappers over ``pconv_cli.train.loop``.

Options left unset fall back to the stage defaults, then the preset, then the
built-in defaults (see ``TrainConfig``). torch is imported inside the commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

_PANEL_DATA = "Data"
_PANEL_MODEL = "Model"
_PANEL_OPT = "Optimisation and loss"
_PANEL_RUN = "Run"
_PANEL_SCALE = "Scale and speed"


def _run(overrides: dict[str, Any], *, resume: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line
    from pconv_cli.data.datasets import DataError
    from pconv_cli.data.masks import MaskError
    from pconv_cli.devices import DeviceError
    from pconv_cli.train.distributed import LaunchError
    from pconv_cli.train.loop import (
        TrainingError,
        TrainingInterrupted,
        resolve_config,
        train,
    )
    from pconv_cli.train.losses import VGGWeightsError
    from pconv_cli.weights.checkpoint import WeightsError

    expected = (
        TrainingError, DataError, DeviceError, VGGWeightsError, MaskError, WeightsError,
        LaunchError,
    )  # fmt: skip
    try:
        config = resolve_config(overrides, resume=resume)
        if config.processes > 1 and "WORLD_SIZE" not in os.environ:
            summary = _launch_workers(config)
        else:
            with _RichProgress(console) as progress:
                summary = train(config, progress)
    except TrainingInterrupted as exc:
        console.print(
            f"[yellow]{escape(str(exc))}[/]; continue with: "
            f"pconv train --out {escape(overrides['out'])} --resume",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except expected as exc:
        console.print(f"[red]Error:[/] {escape(str(exc))}", highlight=False)
        if isinstance(exc, LaunchError) and any(Path(overrides["out"]).glob("checkpoints/*")):
            console.print(f"resume with: pconv train --out {escape(overrides['out'])} --resume")
        raise typer.Exit(1) from None
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
    from dataclasses import asdict

    from pconv_cli.devices import resolve_device
    from pconv_cli.train.distributed import check_world_size, launch
    from pconv_cli.train.loop import preflight, run_worker

    device = resolve_device("cuda" if config.gpus else config.device)
    check_world_size(config.processes, device)
    preflight(config)
    data = {k: v for k, v in asdict(config).items()}
    return launch(run_worker, (data, _rich_callbacks), processes=config.processes)


def _rich_callbacks() -> _RichProgress:
    """Progress display for rank 0 of a launched run (built inside the worker)."""
    from rich.console import Console

    return _RichProgress(Console(stderr=True, soft_wrap=True))


class _RichProgress:
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
            f"[bold]pconv train[/] on {info['device']}: {info['images']} images, masks "
            f"{info['masks']}, batch {info['batch']} (global {info['global_batch']}), "
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
        self.progress.update(self.task, speed=f"{record['images_per_s']:.1f} img/s")

    def on_message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)


def train(
    data: str = typer.Option(
        None,
        "--data",
        help="Image folder (searched recursively) or a file list "
        "(Places365/CelebA style 'path [label]' lines).",
        rich_help_panel=_PANEL_DATA,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory.", rich_help_panel=_PANEL_RUN),
    data_root: str = typer.Option(
        None,
        "--data-root",
        help="Root for a file list's paths [default: the list's folder].",
        rich_help_panel=_PANEL_DATA,
    ),
    stage: int = typer.Option(
        None,
        "--stage",
        help="1: from scratch, lr 2e-4. 2: fine-tune --init with lr 5e-5 and "
        "the encoder's BN frozen. [default: 1]",
        rich_help_panel=_PANEL_RUN,
    ),
    init: str = typer.Option(
        None,
        "--init",
        help="Start from these weights: a registry name or a pconv, MMagic or naoto0804 file.",
        rich_help_panel=_PANEL_RUN,
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the run in --out from its newest checkpoint.",
        rich_help_panel=_PANEL_RUN,
    ),
    preset: str = typer.Option(
        None,
        "--preset",
        help="'demo': a small net at 128 px without VGG, a few minutes on CPU.",
        rich_help_panel=_PANEL_RUN,
    ),
    arch: str = typer.Option(
        None,
        "--arch",
        help="pconv (partial convolutions) or unet (plain convolutions). [default: pconv]",
        rich_help_panel=_PANEL_MODEL,
    ),
    layers: int = typer.Option(
        None,
        "--layers",
        help="7 (256 px, MMagic) or 8 (512 px, paper). [default: 7]",
        rich_help_panel=_PANEL_MODEL,
    ),
    width: float = typer.Option(
        None, "--width", help="Channel multiplier. [default: 1.0]", rich_help_panel=_PANEL_MODEL
    ),
    size: int = typer.Option(
        None,
        "--size",
        help="Training crop size in pixels. [default: 256]",
        rich_help_panel=_PANEL_DATA,
    ),
    crop: str = typer.Option(
        None,
        "--crop",
        help="mmagic: random crop of 1.5x --size (clipped to the image), "
        "resized; resize: short side to --size, random crop. [default: mmagic]",
        rich_help_panel=_PANEL_DATA,
    ),
    masks: str = typer.Option(
        None,
        "--masks",
        help="A mask kind (irregular, brush, box, thin, medium, thick, mixed) "
        "or a folder of mask files (white = hole). [default: irregular]",
        rich_help_panel=_PANEL_DATA,
    ),
    invert_mask: bool = typer.Option(
        None,
        "--invert-mask/--no-invert-mask",
        help="Mask files are black = hole.",
        rich_help_panel=_PANEL_DATA,
    ),
    batch: int = typer.Option(
        None,
        "--batch",
        help="Images per step (per process). [default: 8]",
        rich_help_panel=_PANEL_OPT,
    ),
    steps: int = typer.Option(
        None,
        "--steps",
        help="Total optimizer steps. [default: 800000 stage 1, 500000 stage 2]",
        rich_help_panel=_PANEL_OPT,
    ),
    lr: float = typer.Option(
        None,
        "--lr",
        help="Adam learning rate. [default: 2e-4 stage 1, 5e-5 stage 2]",
        rich_help_panel=_PANEL_OPT,
    ),
    vgg_weights: str = typer.Option(
        None,
        "--vgg-weights",
        help="'imagenet' (torchvision, hub cache), a local VGG16 weights "
        "file, or 'none' (no perceptual/style loss). [default: imagenet]",
        rich_help_panel=_PANEL_OPT,
    ),
    loss_valid: float = typer.Option(
        None, "--loss-valid", help="[default: 1]", rich_help_panel=_PANEL_OPT
    ),
    loss_hole: float = typer.Option(
        None, "--loss-hole", help="[default: 6]", rich_help_panel=_PANEL_OPT
    ),
    loss_perceptual: float = typer.Option(
        None, "--loss-perceptual", help="[default: 0.05]", rich_help_panel=_PANEL_OPT
    ),
    loss_style: float = typer.Option(
        None, "--loss-style", help="[default: 120]", rich_help_panel=_PANEL_OPT
    ),
    loss_tv: float = typer.Option(
        None, "--loss-tv", help="[default: 0.1]", rich_help_panel=_PANEL_OPT
    ),
    freeze_encoder: bool = typer.Option(
        None,
        "--freeze-encoder/--no-freeze-encoder",
        help="Freeze the whole encoder.",
        rich_help_panel=_PANEL_OPT,
    ),
    workers: int = typer.Option(
        None, "--workers", help="Data loader processes. [default: 4]", rich_help_panel=_PANEL_DATA
    ),
    seed: int = typer.Option(None, "--seed", help="[default: 0]", rich_help_panel=_PANEL_RUN),
    device: str = typer.Option(
        None, "--device", help="auto, cpu, cuda or mps. [default: auto]", rich_help_panel=_PANEL_RUN
    ),
    save_every: int = typer.Option(
        None, "--save-every", help="[default: 5000]", rich_help_panel=_PANEL_RUN
    ),
    keep_last: int = typer.Option(
        None, "--keep-last", help="Checkpoints kept. [default: 3]", rich_help_panel=_PANEL_RUN
    ),
    sample_every: int = typer.Option(
        None, "--sample-every", help="[default: 1000]", rich_help_panel=_PANEL_RUN
    ),
    log_every: int = typer.Option(
        None, "--log-every", help="[default: 50]", rich_help_panel=_PANEL_RUN
    ),
    gpus: int = typer.Option(
        None,
        "--gpus",
        help="Train on N local GPUs, one process each (DDP over NCCL).",
        rich_help_panel=_PANEL_SCALE,
    ),
    nproc: int = typer.Option(
        None,
        "--nproc",
        help="Train in N local processes (DDP; gloo with --device cpu).",
        rich_help_panel=_PANEL_SCALE,
    ),
    sync_bn: bool = typer.Option(
        None,
        "--sync-bn/--no-sync-bn",
        help="BatchNorm statistics over the global batch.",
        rich_help_panel=_PANEL_SCALE,
    ),
    precision: str = typer.Option(
        None,
        "--precision",
        help="fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler). [default: fp32]",
        rich_help_panel=_PANEL_SCALE,
    ),
    channels_last: bool = typer.Option(
        None,
        "--channels-last/--no-channels-last",
        help="channels_last memory format.",
        rich_help_panel=_PANEL_SCALE,
    ),
    compile_model: bool = typer.Option(
        None,
        "--compile/--no-compile",
        help="torch.compile the training step.",
        rich_help_panel=_PANEL_SCALE,
    ),
) -> None:
    """Train a PConv U-Net (stage 1 from scratch, stage 2 from --init), or --resume a run.

    Several GPUs: --gpus N here, or the same command under torchrun (multi-node).
    """
    overrides = dict(
        data=data,
        out=str(out),
        data_root=data_root,
        stage=stage,
        init=init,
        preset=preset,
        arch=arch,
        layers=layers,
        width=width,
        size=size,
        crop=crop,
        masks=masks,
        invert_mask=invert_mask,
        batch=batch,
        steps=steps,
        lr=lr,
        vgg_weights=vgg_weights,
        freeze_encoder=freeze_encoder,
        workers=workers,
        seed=seed,
        device=device,
        save_every=save_every,
        keep_last=keep_last,
        sample_every=sample_every,
        log_every=log_every,
        gpus=gpus,
        nproc=nproc,
        sync_bn=sync_bn,
        precision=precision,
        channels_last=channels_last,
        compile=compile_model,
    )
    overrides["loss_weights"] = _loss_weights(
        valid=loss_valid, hole=loss_hole, perceptual=loss_perceptual, style=loss_style, tv=loss_tv
    )
    if not resume and data is None:
        raise typer.BadParameter("--data is required (unless --resume)", param_hint="--data")
    _run(overrides, resume=resume)


def _loss_weights(**given: float | None) -> dict[str, float] | None:
    if all(v is None for v in given.values()):
        return None
    from pconv_cli.train.losses import LossWeights

    weights = LossWeights().as_dict()
    weights.update({k: v for k, v in given.items() if v is not None})
    return weights


def finetune(
    init: str = typer.Option(
        ...,
        "--init",
        help="Weights to fine-tune: a registry name (see pconv weights list) or a pconv, "
        "MMagic or naoto0804 file.",
    ),
    data: str = typer.Option(..., "--data", help="Image folder or file list."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    freeze_encoder: bool = typer.Option(
        False, "--freeze-encoder", help="Freeze the whole encoder, not only its BN."
    ),
    data_root: str = typer.Option(None, "--data-root"),
    masks: str = typer.Option(None, "--masks", help="Mask kind or folder. [default: irregular]"),
    invert_mask: bool = typer.Option(None, "--invert-mask/--no-invert-mask"),
    size: int = typer.Option(None, "--size", help="[default: 256]"),
    batch: int = typer.Option(None, "--batch", help="[default: 8]"),
    steps: int = typer.Option(None, "--steps", help="[default: 500000]"),
    lr: float = typer.Option(None, "--lr", help="[default: 5e-5]"),
    vgg_weights: str = typer.Option(None, "--vgg-weights", help="imagenet, PATH or none."),
    workers: int = typer.Option(None, "--workers"),
    seed: int = typer.Option(None, "--seed"),
    device: str = typer.Option(None, "--device"),
    save_every: int = typer.Option(None, "--save-every"),
    sample_every: int = typer.Option(None, "--sample-every"),
    log_every: int = typer.Option(None, "--log-every"),
) -> None:
    """Fine-tune weights on new data: stage-2 defaults (lr 5e-5, encoder BN frozen)."""
    overrides = dict(
        stage=2,
        init=init,
        data=data,
        out=str(out),
        freeze_encoder=freeze_encoder,
        data_root=data_root,
        masks=masks,
        invert_mask=invert_mask,
        size=size,
        batch=batch,
        steps=steps,
        lr=lr,
        vgg_weights=vgg_weights,
        workers=workers,
        seed=seed,
        device=device,
        save_every=save_every,
        sample_every=sample_every,
        log_every=log_every,
    )
    _run(overrides, resume=False)
