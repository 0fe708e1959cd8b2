"""``pconv classify train|eval``: torchvision classifiers with zero or partial-convolution padding.

Thin wrappers: training goes through the shared training runner (the generic loop
with the ``classification`` task), evaluation through
:mod:`pconv_cli.evaluation.classification`. torch is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from pconv_cli.commands._options import (
    DEVICE_METAVAR,
    FLAG,
    Command,
    command_group,
    device_value,
)

classify_app = command_group(
    "classify",
    "Train and score image classifiers, e.g. pd_resnet50 (partial-convolution padding).",
)

_PANEL_OPT = "Optimisation"
_PANEL_SCALE = "Scale and speed"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


@classify_app.command("train", cls=Command)
def train_command(
    data: Path = typer.Option(
        None,
        "--data",
        help="Folder with train/CLASS/ and val/CLASS/ image folders. "
        "[default: none; required unless --resume]",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory."),
    arch: str = typer.Option(
        "pd_resnet50",
        "--arch",
        help="Any torchvision classifier name; the pd_ prefix gives partial-convolution padding.",
    ),
    weights: str = typer.Option(
        None,
        "--weights",
        "--init",
        help="Start from torchvision weights by name (e.g. IMAGENET1K_V1: zero-padding ImageNet "
        "weights, NVIDIA's recommended start for pd_ models) or a weights file. [default: none]",
    ),
    num_classes: int = typer.Option(
        None,
        "--num-classes",
        min=1,
        help="Classes of the output layer. [default: the number of class folders]",
    ),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Passes over train/. [default: 90]"),
    batch: int = typer.Option(
        None,
        "--batch",
        min=1,
        help="Global batch, split over the processes. [default: 256]",
        rich_help_panel=_PANEL_OPT,
    ),
    lr: float = typer.Option(
        None, "--lr", help="SGD learning rate. [default: 0.1]", rich_help_panel=_PANEL_OPT
    ),
    momentum: float = typer.Option(
        None, "--momentum", help="SGD momentum. [default: 0.9]", rich_help_panel=_PANEL_OPT
    ),
    weight_decay: float = typer.Option(
        None,
        "--weight-decay",
        help="SGD weight decay (L2). [default: 1e-4]",
        rich_help_panel=_PANEL_OPT,
    ),
    lr_step: int = typer.Option(
        None,
        "--lr-step",
        min=1,
        help="Epochs between lr drops. [default: 30]",
        rich_help_panel=_PANEL_OPT,
    ),
    lr_gamma: float = typer.Option(
        None,
        "--lr-gamma",
        help="Factor of each lr drop. [default: 0.1]",
        rich_help_panel=_PANEL_OPT,
    ),
    size: int = typer.Option(None, "--size", min=16, help="Crop size in pixels. [default: 224]"),
    preset: str = typer.Option(
        None, "--preset", help="demo: 64 px crops, 12 epochs: minutes on a CPU. [default: none]"
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out.", **FLAG),
    workers: int = typer.Option(
        None, "--workers", min=0, help="Data loader processes. [default: 4]"
    ),
    seed: int = typer.Option(
        None, "--seed", min=0, help="Seed of the weights and of every crop and flip. [default: 0]"
    ),
    device: str = typer.Option(
        None,
        "--device",
        metavar=DEVICE_METAVAR,
        callback=device_value,
        help="Where to train (auto: CUDA, then MPS, then CPU). [default: auto]",
    ),
    keep_last: int = typer.Option(
        None, "--keep-last", min=1, help="Checkpoints kept. [default: 3]"
    ),
    log_every: int = typer.Option(
        None, "--log-every", min=1, help="Steps between log records. [default: 10]"
    ),
    gpus: int = typer.Option(
        None,
        "--gpus",
        min=1,
        help="Train on N local GPUs (DDP, NCCL). [default: 1 process]",
        rich_help_panel=_PANEL_SCALE,
    ),
    nproc: int = typer.Option(
        None,
        "--nproc",
        min=1,
        help="Train in N local processes (DDP). [default: 1]",
        rich_help_panel=_PANEL_SCALE,
    ),
    sync_bn: bool = typer.Option(
        None,
        "--sync-bn/--no-sync-bn",
        help="BatchNorm over the global batch. [default: off]",
        rich_help_panel=_PANEL_SCALE,
        **FLAG,
    ),
    precision: Literal["fp32", "bf16", "fp16"] = typer.Option(
        None,
        "--precision",
        help="Autocast precision (fp16 with a gradient scaler). [default: fp32]",
        rich_help_panel=_PANEL_SCALE,
    ),
    channels_last: bool = typer.Option(
        None,
        "--channels-last/--no-channels-last",
        help="channels_last memory format. [default: off]",
        rich_help_panel=_PANEL_SCALE,
        **FLAG,
    ),
    compile_model: bool = typer.Option(
        None,
        "--compile/--no-compile",
        help="torch.compile the step. [default: off]",
        rich_help_panel=_PANEL_SCALE,
        **FLAG,
    ),
) -> None:
    """Train a classifier on an image folder (NVIDIA's / torchvision's ImageNet recipe).

    Top-1/top-5 on val/ every epoch; best.safetensors keeps the best top-1.
    """
    import os

    from pconv_cli.commands._training import run_training

    if not resume and data is None:
        raise typer.BadParameter("--data is required (unless --resume)", param_hint="--data")
    processes = gpus or nproc or int(os.environ.get("WORLD_SIZE", 1))
    per_process = None
    if batch is not None:
        if batch % processes:
            raise typer.BadParameter(
                f"{batch} does not split over {processes} processes", param_hint="--batch"
            )
        per_process = batch // processes
    model: dict = {}
    if not resume:
        from pconv_cli.data.classification import find_classes

        if not (data / "train").is_dir():
            raise _fail(
                f"--data {data}: no train/ folder (expected {data}/train/<class>/... and "
                f"{data}/val/<class>/...)"
            )
        model["num_classes"] = num_classes or len(find_classes(data / "train"))
    overrides = dict(
        data=None if data is None else str(data), out=str(out), arch=None if resume else arch,
        model=model, pretrained=weights, epochs=epochs, batch=per_process, lr=lr,
        momentum=momentum, weight_decay=weight_decay, lr_step=lr_step, lr_gamma=lr_gamma,
        size=size, preset=preset, workers=workers, seed=seed, device=device,
        keep_last=keep_last, log_every=log_every, gpus=gpus, nproc=nproc, sync_bn=sync_bn,
        precision=precision, channels_last=channels_last, compile=compile_model,
    )  # fmt: skip
    if not resume:
        _check_classifier(arch)
    run_training(overrides, resume=resume, command="pconv classify train")


def _check_classifier(arch: str) -> None:
    from pconv_cli.models import ModelError, get_family

    try:
        family = get_family(arch)
    except ModelError as exc:
        raise _fail(str(exc), 2) from None
    if family.kind != "classification":
        raise _fail(f"--arch {arch} is an {family.kind} model, not a classifier", 2)


@classify_app.command("eval", cls=Command)
def eval_command(
    weights: str = typer.Option(
        ..., "--weights", "-w", help="A classifier checkpoint (.safetensors)."
    ),
    data: Path = typer.Option(..., "--data", help="A labelled folder: CLASS/IMAGE (e.g. DIR/val)."),
    arch: str = typer.Option(
        None,
        "--arch",
        help="Check the checkpoint is this architecture (e.g. pd_resnet50). [default: any]",
    ),
    size: int = typer.Option(
        None, "--size", min=16, help="Crop size. [default: the training size]"
    ),
    batch: int = typer.Option(64, "--batch", min=1, help="Images per batch."),
    device: str = typer.Option(
        "auto",
        "--device",
        metavar=DEVICE_METAVAR,
        callback=device_value,
        help="Where to run (auto: CUDA, then MPS, then CPU).",
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="Data loader processes."),
    json_out: Path = typer.Option(
        None, "--json", help="Write the scores and the confusion matrix as JSON. [default: none]"
    ),
) -> None:
    """Top-1 / top-5 accuracy of a classifier on a labelled folder, with a confusion table."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pconv_cli.data.classification import ImageFolderDataset
    from pconv_cli.devices import resolve_device
    from pconv_cli.evaluation.classification import evaluate_classifier
    from pconv_cli.files import atomic_write
    from pconv_cli.weights import model_from_weights, open_weights

    console = Console(soft_wrap=True, highlight=False)
    loaded = open_weights(weights)
    if arch and loaded.family != arch:
        raise _fail(f"--weights {weights} holds a {loaded.family}, not a {arch}")
    if not hasattr(loaded.config, "num_classes"):
        raise _fail(f"--weights {weights} holds a {loaded.family} model, not a classifier")
    classes = json.loads(loaded.metadata["classes"]) if "classes" in loaded.metadata else None
    crop = size or int(loaded.metadata.get("size", 224))
    dataset = ImageFolderDataset(data, size=crop, train=False, classes=classes)
    if len(dataset.classes) != loaded.config.num_classes:
        raise _fail(
            f"{data} has {len(dataset.classes)} classes, the model {loaded.config.num_classes}"
        )
    model = model_from_weights(loaded, device=resolve_device(device))
    result = evaluate_classifier(
        model, dataset, dataset.classes, batch_size=batch,
        device=next(model.parameters()).device, workers=workers,
    )  # fmt: skip
    console.print(
        f"[bold]{escape(loaded.family)}[/] on {escape(str(data))}: {result.count} images, "
        f"top-1 {result.top1:.2f}%, top-5 {result.top5:.2f}%"
    )
    if len(result.classes) <= 20:
        table = Table(title="confusion (rows: true class, columns: predicted)")
        table.add_column("")
        for index in range(len(result.classes)):
            table.add_column(str(index), justify="right")
        for index, name in enumerate(result.classes):
            table.add_row(
                f"{index} {escape(name)}", *(str(int(v)) for v in result.confusion[index])
            )
        console.print(table)
    if json_out is not None:
        text = json.dumps(
            {"weights": weights, "family": loaded.family, **result.to_json()}, indent=2
        )
        atomic_write(json_out, lambda tmp: tmp.write_text(text + "\n"))
        console.print(f"wrote {escape(str(json_out))}")
