"""``pconv train`` and ``pconv finetune``: thin wrappers over :mod:`pconv_cli.train`.

Both commands are built from one table of options (:data:`OPTIONS`): ``finetune``
is ``train`` at the family's fine-tuning stage (the PConv U-Net's stage 2) with a
required ``--init`` and without the options that ``--init`` decides (architecture,
size of the net) or that only a new run has.
Options left unset fall back to the task's stage defaults, then the preset, then
the built-in defaults (see ``TrainConfig``). torch is imported inside the commands.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer

from pconv_cli.commands._options import (
    DEVICE_METAVAR,
    FLAG,
    device_value,
    masks_value,
    non_negative_float,
    positive_float,
    ratio_range_value,
)
from pconv_cli.data.mask_kinds import MASK_KINDS
from pconv_cli.models.families import DEFAULT_FAMILY, FamilyOption, family_cli

_PANEL_DATA = "Data"
_PANEL_MODEL = "Model"
_PANEL_OPT = "Optimisation and loss"
_PANEL_RUN = "Run"
_PANEL_SCALE = "Scale and speed"


@dataclass(frozen=True)
class _Option:
    """One command-line option: its parameter, type, typer declaration and where it goes.

    ``key`` is the ``TrainConfig`` field (``model.X`` for a model option,
    ``loss.X`` for a loss weight); ``finetune`` is False for options finetune
    lacks, or a replacement declaration for finetune.
    """

    name: str
    annotation: Any
    declaration: Any
    key: str | None = None
    finetune: bool | Any = True


def _opt(*decls: str, help: str, panel: str, default: Any = None, **extra: Any) -> Any:
    return typer.Option(default, *decls, help=help, rich_help_panel=panel, **extra)


_FIXED = "Fixed by --init."
_FAMILIES = family_cli()
_ARCHES = "[" + "|".join([*(n for f in _FAMILIES for n in f.families), "NAME"]) + "]"


def _per_family(field: str) -> str:
    """``label: text; label: text`` over the families that say something about ``field``."""
    return "; ".join(f"{f.label}: {getattr(f, field)}" for f in _FAMILIES if getattr(f, field))


def _presets() -> tuple[str, str]:
    """The ``--preset`` metavar and help, from every family's presets."""
    names = list(dict.fromkeys(name for f in _FAMILIES for name in f.presets))
    parts = [
        f"{name}: " + "; ".join(f"{f.label}: {f.presets[name]}" for f in _FAMILIES
                                if name in f.presets)
        for name in names
    ]  # fmt: skip
    return "[" + "|".join(names) + "]", ". ".join(parts)
_PRECISIONS = Literal["fp32", "bf16", "fp16"]
_CROPS = Literal["mmagic", "resize"]
_SCHEDULES = Literal["constant", "cosine"]

OPTIONS: tuple[_Option, ...] = (
    _Option("data", str, _opt(
        "--data", "--folder", "-f", panel=_PANEL_DATA, metavar="DIR|LIST",
        help="Image folder (searched recursively) or a file list of Places365/CelebA "
        "'path [label]' lines. [default: none; required unless --resume]",
    ), finetune=typer.Option(None, "--data", "--folder", "-f", metavar="DIR|LIST",
                             help="Image folder or file list. [default: none; required unless "
                             "--resume]", rich_help_panel=_PANEL_DATA)),
    _Option("out", Path, typer.Option(..., "--out", "-o", help="Run directory.",
                                      rich_help_panel=_PANEL_RUN)),
    _Option("data_root", str, _opt(
        "--data-root", panel=_PANEL_DATA, metavar="DIR",
        help="Root of a file list's paths. [default: the list's folder]",
    )),
    _Option("stage", int, _opt(
        "--stage", panel=_PANEL_RUN, min=1, max=3,
        help=f"Training stage of the family's recipe. {_per_family('stages')}. [default: 1]",
    ), finetune=False),
    _Option("init", str, _opt(
        "--init", "--weights", "-w", panel=_PANEL_RUN, metavar="NAME|PATH",
        help="Start from these weights: a zoo name or a weights file in any supported "
        "format (pconv weights list). [default: none, fresh weights]",
    ), finetune=typer.Option(
        None, "--init", "--weights", "-w", metavar="NAME|PATH", rich_help_panel=_PANEL_RUN,
        help="Weights to fine-tune: a zoo name (pconv weights list) or a weights file in "
        "any supported format. [default: none; required unless --resume]",
    )),
    _Option("resume", bool, typer.Option(
        False, "--resume", help="Continue the run in --out from its newest checkpoint.",
        rich_help_panel=_PANEL_RUN, **FLAG,
    )),
    _Option("preset", str, _opt(
        "--preset", panel=_PANEL_RUN, metavar=_presets()[0],
        help=f"A whole recipe; options given still win. {_presets()[1]}. [default: none]",
    ), finetune=False),
    _Option("arch", str, _opt(
        "--arch", panel=_PANEL_MODEL, metavar=_ARCHES,
        help="Model family: "
        + ", ".join(f"{n} ({what})" for f in _FAMILIES for n, what in f.families.items())
        + ", or any registered family with a training task (inference-only families are "
        f"refused). [default: {DEFAULT_FAMILY}]",
    ), finetune=False),
    _Option("size", int, _opt(
        "--size", panel=_PANEL_DATA, min=8,
        help="Training crop size in pixels. [default: 256; finetune: the --init model's]",
    )),
    _Option("crop", _CROPS, _opt(
        "--crop", panel=_PANEL_DATA,
        help="mmagic: random crop of 1.5 x --size (clipped to the image), resized; resize: "
        "short side to --size, random crop. [default: mmagic]",
    )),
    _Option("crop_size", int, _opt(
        "--crop-size", panel=_PANEL_DATA, min=8, metavar="PX",
        help="--crop mmagic: side of the random square crop that is resized to --size "
        "(sets the scale the net learns). [default: 1.5 x --size]",
    )),
    _Option("masks", str, _opt(
        "--masks", "--mask", "-m", panel=_PANEL_DATA, callback=masks_value,
        metavar="[" + "|".join(MASK_KINDS) + "|DIR]",
        help="A mask kind (see pconv gen-masks --help; A+B: one of them per mask), or a folder "
        "of mask files (white = hole). [default: irregular]",
    )),
    _Option("hole_ratio", str, _opt(
        "--hole-ratio", panel=_PANEL_DATA, metavar="LO-HI", callback=ratio_range_value,
        help="Hole ratios of generated masks, uniform in LO <= r < HI (0.01-0.6: NVIDIA's "
        "test buckets evenly). [default: the kind's range, irregular 0.15-0.65]",
    )),
    _Option("invert_mask", bool, _opt(
        "--invert-mask/--no-invert-mask", panel=_PANEL_DATA, help="Mask files are black = hole.",
        **FLAG,
    )),
    _Option("batch", int, _opt(
        "--batch", "-b", panel=_PANEL_OPT, min=1,
        help="Images per step and process. [default: 8]",
    )),
    _Option("steps", int, _opt(
        "--steps", panel=_PANEL_OPT, min=1,
        help=f"Total optimizer steps. [default: the family's: {_per_family('defaults')}]",
    )),
    _Option("lr", float, _opt(
        "--lr", panel=_PANEL_OPT, callback=positive_float,
        help="Learning rate. [default: the family's, see --steps]",
    )),
    _Option("lr_schedule", _SCHEDULES, _opt(
        "--lr-schedule", panel=_PANEL_OPT,
        help="constant, or cosine: half a cosine from --lr to 0 over the run. "
        "[default: constant]",
    )),
    _Option("loss", list[str], _opt(
        "--loss", panel=_PANEL_OPT, metavar="TERM=WEIGHT",
        help="Weight of any loss term of the model's task, repeatable, e.g. l1_hole=1 or "
        "adversarial=0.1. [default: the task's, see config.json]",
    ), key="loss.*"),
    _Option("workers", int, _opt(
        "--workers", "-j", panel=_PANEL_DATA, min=0,
        help="Data loader processes. [default: 4, at most the CPU count]",
    )),
    _Option("seed", int, _opt(
        "--seed", panel=_PANEL_RUN, min=0,
        help="Seed of the weights and of every crop, flip and mask. [default: 0]",
    )),
    _Option("device", str, _opt(
        "--device", panel=_PANEL_RUN, metavar=DEVICE_METAVAR, callback=device_value,
        help="Where to train. [default: auto: CUDA, then MPS, then CPU]",
    )),
    _Option("save_every", int, _opt("--save-every", panel=_PANEL_RUN, min=1,
            help="Steps between checkpoints. [default: 5000]")),
    _Option("keep_last", int, _opt("--keep-last", panel=_PANEL_RUN, min=1,
            help="Checkpoints kept. [default: 3]")),
    _Option("sample_every", int, _opt("--sample-every", panel=_PANEL_RUN, min=1,
            help="Steps between sample grids. [default: 1000]")),
    _Option("log_every", int, _opt("--log-every", panel=_PANEL_RUN, min=1,
            help="Steps between log records. [default: 50]")),
    _Option("gpus", int, _opt(
        "--gpus", panel=_PANEL_SCALE, min=1,
        help="Train on N local GPUs, one process each (DDP over NCCL). [default: 1 process]",
    )),
    _Option("nproc", int, _opt(
        "--nproc", panel=_PANEL_SCALE, min=1,
        help="Train in N local processes (DDP; gloo with --device cpu). [default: 1]",
    )),
    _Option("sync_bn", bool, _opt(
        "--sync-bn/--no-sync-bn", panel=_PANEL_SCALE,
        help="BatchNorm statistics over the global batch. [default: off]", **FLAG,
    )),
    _Option("precision", _PRECISIONS, _opt(
        "--precision", panel=_PANEL_SCALE,
        help="Autocast precision (fp16 with a gradient scaler). [default: fp32]",
    )),
    _Option("channels_last", bool, _opt(
        "--channels-last/--no-channels-last", panel=_PANEL_SCALE,
        help="channels_last memory format. [default: off]", **FLAG,
    )),
    _Option("compile", bool, _opt(
        "--compile/--no-compile", panel=_PANEL_SCALE,
        help="torch.compile the training step. [default: off]", **FLAG,
    )),
)  # fmt: skip

_PANELS = {"model": _PANEL_MODEL, "loss": _PANEL_OPT}


def _family_options() -> tuple[_Option, ...]:
    """The options the families bring (one per name; help names the families sharing it)."""
    by_name: dict[str, list[tuple[str, FamilyOption]]] = {}
    for family in _FAMILIES:
        for option in family.options:
            by_name.setdefault(option.name, []).append((family.label, option))
    built = []
    for declared in by_name.values():
        option = declared[0][1]
        labels = ", ".join(label for label, _ in declared)
        extra: dict[str, Any] = {"metavar": option.metavar} if option.metavar else {}
        if option.flag:
            extra.update(FLAG)
        elif option.positive:
            extra["callback"] = positive_float
        elif option.minimum is not None and option.type is float:
            extra["callback"] = non_negative_float
        elif option.minimum is not None:
            extra["min"] = int(option.minimum)
            if option.maximum is not None:
                extra["max"] = int(option.maximum)
        declaration = _opt(*option.flags, panel=_PANELS[option.panel],
                           help=f"{labels}: {option.help}", **extra)  # fmt: skip
        built.append(_Option(option.name, option.type, declaration, key=option.key,
                             finetune=option.finetune))  # fmt: skip
    return tuple(built)


OPTIONS = OPTIONS + _family_options()


def _overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Command-line values -> ``resolve_config`` overrides (model options, loss weights)."""
    overrides: dict[str, Any] = {"model": {}, "loss_weights": {}}
    for option in OPTIONS:
        if option.name not in values or option.name == "resume":
            continue
        value = values[option.name]
        key = option.key or option.name
        if key.startswith("model."):
            if value is not None:
                overrides["model"][key.removeprefix("model.")] = value
        elif key == "loss.*":
            for item in value or []:
                name, sep, weight = item.partition("=")
                try:
                    overrides["loss_weights"][name.strip()] = float(weight)
                except ValueError:
                    sep = ""
                if not sep or not name.strip() or not float(weight or 0) >= 0:
                    raise typer.BadParameter(
                        f"{item!r} is not TERM=WEIGHT (e.g. l1_hole=1.0)", param_hint="--loss"
                    )
        elif key.startswith("loss."):
            if value is not None:
                overrides["loss_weights"][key.removeprefix("loss.")] = value
        else:
            overrides[key] = str(value) if isinstance(value, Path) else value
    overrides["loss_weights"] = overrides["loss_weights"] or None
    return overrides


def _command(name: str, doc: str, body: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A typer command whose parameters are the :data:`OPTIONS` this command has."""
    parameters = []
    for option in OPTIONS:
        declaration = option.declaration
        if name == "finetune":
            if option.finetune is False:
                continue
            if option.finetune is not True:
                declaration = option.finetune
        parameters.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=declaration,
                annotation=option.annotation,
            )
        )

    def command(**values: Any) -> None:
        body(values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__name__ = name
    command.__doc__ = doc
    return command


def _train(values: dict[str, Any]) -> None:
    from pconv_cli.commands._training import run_training

    if not values["resume"] and values["data"] is None:
        raise typer.BadParameter("--data is required (unless --resume)", param_hint="--data")
    run_training(_overrides(values), resume=values["resume"])


def _finetune(values: dict[str, Any]) -> None:
    from pconv_cli.commands._training import run_training

    if values["resume"]:  # the run's config.json knows it is a fine-tuning run
        run_training(_overrides(values), resume=True, command="pconv finetune")
        return
    for name, option in (("data", "--data"), ("init", "--init")):
        if values[name] is None:
            raise typer.BadParameter(f"{option} is required (unless --resume)", param_hint=option)
    run_training(_overrides(values), resume=False, finetune=True, command="pconv finetune")


train = _command(
    "train",
    """Train a model (stage 1 from scratch, stage 2 from --init), or --resume a run.

    Several GPUs: --gpus N here, or the same command under torchrun (multi-node).
    """,
    _train,
)

finetune = _command(
    "finetune",
    f"""Fine-tune weights on new data with their family's fine-tuning defaults.

    {_per_family("finetune")}.
    Continue an interrupted fine-tuning with: pconv finetune --out RUN --resume.
    """,
    _finetune,
)
