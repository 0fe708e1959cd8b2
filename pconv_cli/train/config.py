"""Every option of a training run, resolved once (defaults < task's stage defaults < preset < user).

The resolved :class:`TrainConfig` is written to the run directory's
``config.json``; ``--resume`` reads it back, so a run continues with the options
it started with (only operational options, :data:`RESUMABLE_OVERRIDES`, may
change). Model options live in ``model`` (the family's config fields, e.g.
``{"layers": 7, "width": 1.0}``); defaults that depend on the model family
(learning rate, steps, loss weights, presets) come from its training task
(:mod:`pconv_cli.train.tasks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pconv_cli.models.families import DEFAULT_FAMILY
from pconv_cli.train.errors import TrainingError, UsageError

if TYPE_CHECKING:
    from pconv_cli.models.registry import ModelFamily
    from pconv_cli.train.tasks import Task
    from pconv_cli.weights.checkpoint import Weights

__all__ = [
    "DEFAULT_ARCH",
    "LR_SCHEDULES",
    "PRECISIONS",
    "RESUMABLE_OVERRIDES",
    "TrainConfig",
    "TrainingError",
    "UsageError",
    "ignored_on_resume",
    "read_config",
    "resolve_config",
]

DEFAULT_ARCH = DEFAULT_FAMILY
PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "step", "cosine")
"""``step``: x ``lr_gamma`` every ``lr_step`` epochs (steps without ``epochs``); ``cosine``:
half a cosine from ``lr`` to 0 over the run."""

RESUMABLE_OVERRIDES = frozenset({
    "data", "data_root", "steps", "epochs", "workers", "device", "save_every", "keep_last",
    "sample_every", "log_every",
    "gpus", "nproc", "precision", "channels_last", "compile",
})  # fmt: skip
"""Options a resumed run may change; everything else comes from its config.json."""

_MODEL_KEYS_V1 = ("layers", "width", "upsampling", "normalization")


@dataclass
class TrainConfig:
    """Every option of a run. ``None`` fields are filled by :func:`resolve_config`."""

    data: str = ""
    out: str = ""
    data_root: str | None = None
    stage: int = 1
    init: str | None = None
    init_from: str = "scratch"  # scratch | resume | init (resolved)
    arch: str = DEFAULT_ARCH
    model: dict[str, Any] = field(default_factory=dict)
    size: int = 256
    crop: str = "mmagic"
    crop_size: int | None = None
    flip: bool = True
    batch: int = 8
    steps: int | None = None
    epochs: int | None = None
    lr: float | None = None
    lr_schedule: str = "constant"
    lr_step: int = 30
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    pretrained: str | None = None
    masks: str = "irregular"
    hole_ratio: str | None = None
    invert_mask: bool = False
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    seed: int = 0
    freeze_encoder_bn: bool | None = None
    freeze_encoder: bool = False
    vgg_weights: str = "imagenet"
    loss_weights: dict[str, float] | None = None
    device: str = "auto"
    save_every: int = 5000
    keep_last: int = 3
    sample_every: int = 1000
    samples: int = 4
    log_every: int = 50
    preset: str | None = None
    gpus: int | None = None
    nproc: int | None = None
    sync_bn: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def lr_factor(self, step: int, steps_per_epoch: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based) as a multiple of ``lr``."""
        if self.lr_schedule == "step":
            unit = step // steps_per_epoch if self.epochs else step
            return self.lr_gamma ** (unit // self.lr_step)
        if self.lr_schedule == "cosine":
            import math

            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        return 1.0

    @property
    def processes(self) -> int:
        """Worker processes on this machine (``--gpus`` or ``--nproc``; 1 by default)."""
        return self.gpus or self.nproc or 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def _migrate(saved: dict[str, Any]) -> dict[str, Any]:
    """A config.json of pconv 0.1 (``arch`` pconv/unet, model options at the top level)."""
    if "model" not in saved:
        saved["model"] = {k: saved.pop(k) for k in _MODEL_KEYS_V1 if k in saved}
        from pconv_cli.models.registry import ModelError, get_family

        # 0.1's arch names (pconv, unet) are registry names or aliases; an unknown one is
        # reported when the run is resolved
        with contextlib.suppress(ModelError):
            saved["arch"] = get_family(saved.get("arch", "")).name
    return saved


def read_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config of an existing run directory."""
    saved = Path(run_dir) / "config.json"
    if not saved.is_file():
        raise TrainingError(f"--resume: {saved} not found (is {run_dir} a pconv run dir?)")
    try:
        values = _migrate(json.loads(saved.read_text()))
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in values.items() if k in known})
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise TrainingError(f"--resume: {saved} is not a pconv run config ({exc})") from None


def _absolute(value: str | None) -> str | None:
    """An existing path made absolute (so a run's config.json works from any folder)."""
    if value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _existing_data(data: str, run_dir: Path, *, given: bool) -> str:
    """The resumed run's data: as stored (absolute since 0.2), else beside the run dir."""
    if Path(data).exists():
        return data
    beside = run_dir / data
    if not given and not Path(data).is_absolute() and beside.exists():
        return str(beside)
    where = "--data" if given else "its config.json"
    raise TrainingError(
        f"--resume: the training data {data} (from {where}) does not exist; "
        "pass --data PATH to continue on a copy of it"
    )


def ignored_on_resume(overrides: dict[str, Any]) -> list[str]:
    """The given options that ``--resume`` ignores (they are fixed by the run's config.json)."""
    given = {k for k, v in overrides.items() if v not in (None, {}, [])}
    return sorted(given - RESUMABLE_OVERRIDES - {"out"})


def resolve_config(
    overrides: dict[str, Any], *, resume: bool = False, finetune: bool = False
) -> TrainConfig:
    """Defaults < the task's stage defaults < preset < ``overrides`` (keys of :class:`TrainConfig`).

    ``overrides["model"]`` holds model options the user gave. With ``resume`` the
    run dir's ``config.json`` is the base and only :data:`RESUMABLE_OVERRIDES`
    may be changed (see :func:`ignored_on_resume`). ``finetune`` picks the task's
    fine-tuning stage (the PConv U-Net's stage 2) and needs ``init``.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise UsageError(f"unknown training options: {', '.join(sorted(unknown))}")
    if resume:
        out = overrides.get("out")
        if not out:
            raise UsageError("--resume needs --out RUN_DIR")
        config = read_config(out)
        config = replace(
            config, **{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES}
        )
        config.init_from = "resume"
        config.out = str(out)  # the run is the folder named now (a copy stays a copy)
        config.data = _existing_data(config.data, Path(out), given="data" in overrides)
        check_run_paths(config)
        return config
    if finetune and not overrides.get("init"):
        raise UsageError("fine-tuning needs --init WEIGHTS")
    config = _resolve_new(overrides, finetune)
    check_run_paths(config)
    return config


def check_run_paths(config: TrainConfig) -> None:
    """``--out`` must be a folder pconv can write, apart from a ``--data`` folder (read
    recursively): a run inside it would train on its own samples next time, and data
    inside ``--out`` would be mixed with checkpoints. A UsageError, before any writing.
    (A list file names its images, so a run beside it is fine.)"""
    from pconv_cli.files import is_inside, writable_problem

    out = Path(config.out)
    problem = writable_problem(out, folder=True)
    if problem:
        raise UsageError(f"--out {out}: {problem}")
    data = Path(config.data) if config.data else None
    if data is not None and data.is_dir() and (is_inside(out, data) or is_inside(data, out)):
        where = "is" if out.resolve() == data.resolve() else "overlaps"
        raise UsageError(
            f"--out {out} {where} the training data folder (--data {data}); give a run "
            "folder outside it"
        )


def _resolve_new(overrides: dict[str, Any], finetune: bool = False) -> TrainConfig:
    if overrides.get("stage", 1) > 1 and not overrides.get("init") and not finetune:
        overrides = _continue_stage(overrides)
    init_weights = _open_init(overrides.get("init"))
    family = _training_family(overrides, init_weights)
    task = _training_task(family)
    if finetune:
        overrides = {**overrides, "stage": task.finetune_stage}
    stage = overrides.get("stage", 1)
    preset = _stage_preset(task, family.name, stage, overrides.get("preset"))

    values: dict[str, Any] = dict(task.stage_defaults[stage])
    preset_model = preset.pop("model", {})
    values.update(preset)
    values.update({k: v for k, v in overrides.items() if k != "model"})
    values["model"] = _model_values(
        family, preset_model, dict(overrides.get("model", {})), init_weights, overrides.get("init")
    )
    if init_weights is not None and "size" not in overrides and "size" not in preset:
        size = _training_size(init_weights)  # fine-tune at the size the weights learnt
        if size:
            values["size"] = size
    values["arch"] = family.name
    for key in ("data", "data_root", "masks", "vgg_weights", "init", "pretrained"):
        if values.get(key):
            values[key] = _absolute(values[key])
    values["loss_weights"] = task.resolve_loss_weights(
        {**preset.get("loss_weights", {}), **(overrides.get("loss_weights") or {})}
    )  # the task's < the preset's < the user's, term by term
    values["init_from"] = _init_from(init_weights, stage, task)
    config = TrainConfig(**values)
    _validate(config)
    return config


def _open_init(spec: str | None) -> Weights | None:
    """The ``--init`` weights (None without it); a bad spec is a one-line --init error."""
    from pconv_cli.weights import WeightsError, open_weights

    if not spec:
        return None
    try:
        return open_weights(spec, progress=False)
    except WeightsError as exc:
        raise exc.prefixed("--init") from None


def _training_family(overrides: dict[str, Any], init_weights: Weights | None) -> ModelFamily:
    """``--arch``, else the ``--init`` weights' family, else the default; they must agree."""
    from pconv_cli.models.registry import ModelError, get_family

    try:
        arch = overrides.get("arch") or (init_weights.family if init_weights else DEFAULT_ARCH)
        family = get_family(arch)
    except ModelError as exc:
        raise exc.prefixed("--arch") from None
    if init_weights is not None and family.name != init_weights.family:
        raise UsageError(
            f"--arch {arch} conflicts with --init {overrides['init']} "
            f"(a {init_weights.family} model)"
        )
    return family


def _training_task(family: ModelFamily) -> type[Task]:
    """The family's training task (an inference-only family is a usage error)."""
    from pconv_cli.train.tasks import get_task

    if family.task is None:
        raise UsageError(
            f"{family.name} is inference only: pconv has no training task for it (use it "
            "with pconv inpaint, eval and serve)"
        )
    return get_task(family.task)


def _stage_preset(task: type[Task], family_name: str, stage: int, preset_name: str | None) -> dict:
    """The preset's values for this stage (empty without ``--preset``); checks both."""
    if stage not in task.stage_defaults:
        stages = " or ".join(str(s) for s in task.stage_defaults)
        raise UsageError(f"--stage must be {stages} for {family_name}, got {stage}")
    if preset_name is not None and preset_name not in task.presets:
        known = ", ".join(task.presets) or "none"
        raise UsageError(
            f"unknown preset {preset_name!r} for {family_name}; choose from {known}"
        )
    preset = dict(task.presets.get(preset_name, {})) if preset_name else {}
    preset.update(preset.pop("stages", {}).get(stage, {}))  # a preset's values for this stage
    return preset


def _model_values(
    family: ModelFamily,
    preset_model: dict,
    given: dict,
    init_weights: Weights | None,
    init_spec: str | None,
) -> dict[str, Any]:
    """The model config: the preset's < the ``--init`` weights' < the options given (which
    may not contradict ``--init``), checked by the family."""
    from pconv_cli.models.registry import ModelError, make_config

    model_options = {**preset_model}
    if init_weights is not None:
        from_init = dataclasses.asdict(init_weights.config)
        for key, value in given.items():
            if key in from_init and from_init[key] != value:
                raise UsageError(
                    f"--{key.replace('_', '-')} {value} conflicts with --init "
                    f"{init_spec} ({key} = {from_init[key]})"
                )
        model_options = from_init
    model_options.update(given)
    try:
        return dataclasses.asdict(make_config(family, model_options))
    except ModelError as exc:
        raise exc.prefixed(f"--arch {family.name}") from None


def _init_from(init_weights: Weights | None, stage: int, task: type[Task]) -> str:
    """Where the run's weights start: ``init`` or ``scratch`` (a fine-tuning stage needs
    weights)."""
    if init_weights is not None:
        return "init"
    if stage in task.init_stages:
        raise UsageError(
            f"--stage {stage} fine-tunes a trained model: pass --init WEIGHTS, or --out "
            "pointing at a stage-1 run"
        )
    return "scratch"


def _continue_stage(overrides: dict[str, Any]) -> dict[str, Any]:
    """``--stage N`` without ``--init``: start from the newest checkpoint of the run of stage
    N-1 (``OUT/stageN-1`` for N > 2, else ``OUT``), writing into ``OUT/stageN`` (unchanged if
    ``--out`` holds no earlier stage)."""
    root = Path(overrides.get("out") or ".")
    out = root / f"stage{overrides['stage'] - 1}"
    if overrides["stage"] <= 2 or not (out / "config.json").is_file():
        out = root
    if not (out / "config.json").is_file():
        return overrides
    earlier = read_config(out)
    steps = [
        path
        for path in sorted(out.glob("checkpoints/step-*.safetensors"))
        if path.with_name(path.name.replace(".safetensors", ".state.pt")).is_file()
    ]
    if earlier.stage >= overrides["stage"] or not steps:
        return overrides
    stage = overrides["stage"]
    return {**overrides, "init": str(steps[-1]), "out": str(root / f"stage{stage}")}


def _training_size(weights: Any) -> int | None:
    """The crop size weights were trained at: their checkpoint's, or their zoo entry's."""
    from pconv_cli.weights.zoo import ZOO

    size = weights.metadata.get("size")
    if size and str(size).isdigit():
        return int(size)
    entry = ZOO.get(weights.metadata.get("name", ""))
    return entry.train_size if entry else None


def _validate(config: TrainConfig) -> None:
    checks = [
        (config.batch >= 1, "--batch must be >= 1"),
        (
            (config.steps is not None and config.steps >= 1)
            or (config.epochs is not None and config.epochs >= 1),
            "--steps (or --epochs) must be >= 1",
        ),
        (
            config.lr_schedule in LR_SCHEDULES,
            f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}",
        ),
        (
            config.lr_step >= 1 and 0 < config.lr_gamma <= 1,
            "--lr-step must be >= 1, --lr-gamma in (0, 1]",
        ),
        (
            config.momentum >= 0 and config.weight_decay >= 0,
            "momentum and weight decay must be >= 0",
        ),
        (config.lr is not None and config.lr > 0, "--lr must be > 0"),
        (config.size >= 8, "--size must be >= 8"),
        (config.save_every >= 1 and config.sample_every >= 1, "intervals must be >= 1"),
        (config.log_every >= 1, "--log-every must be >= 1"),
        (config.keep_last >= 1, "--keep-last must be >= 1"),
        (config.workers >= 0, "--workers must be >= 0"),
        (config.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
        (not (config.gpus and config.nproc), "give --gpus or --nproc, not both"),
        (config.processes >= 1, "--gpus/--nproc must be >= 1"),
        (not config.gpus or config.device in ("auto", "cuda"), "--gpus needs --device cuda"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
