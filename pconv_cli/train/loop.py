"""One training loop for every start: scratch, resume, stage 2 and fine-tune.

Where a run starts is decided once (``init_from`` in the resolved config, as in
nanoGPT): ``scratch`` (fresh weights), ``resume`` (the newest complete checkpoint
of the same run dir: weights, optimizer, RNG, sample-stream position), or
``init`` (weights from ``--init``; stage 2 and fine-tuning). Everything after that
is the same code.

Run directory::

    config.json        fully resolved options
    log.jsonl          one JSON record per log interval (every loss term, lr, images/s)
    last.safetensors   the newest model weights (pconv checkpoint)
    checkpoints/       step-XXXXXXXX.safetensors (model) + step-XXXXXXXX.state.pt
                       (optimizer, RNG, sampler position; loaded with weights_only=True)
    samples/           step-XXXXXXXX.png: input | mask | output | composite | truth
    loss.png           the loss curve

Images are float RGB in [0, 1] and masks 1 = valid throughout.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw

from pconv_cli.data.datasets import (
    DataError,
    InfiniteSampler,
    InpaintingDataset,
    MaskSource,
    collate,
    resolve_images,
)
from pconv_cli.data.masks import MaskError
from pconv_cli.devices import DeviceError, resolve_device
from pconv_cli.files import atomic_write
from pconv_cli.models.pconv_unet import InpaintingModel, build_model, composite
from pconv_cli.train.distributed import (
    DistContext,
    all_reduce_mean,
    context_from_env,
    convert_sync_batchnorm,
    init_process_group,
)
from pconv_cli.train.losses import (
    InpaintingLoss,
    LossWeights,
    VGGWeightsError,
    load_vgg16_features,
)
from pconv_cli.weights.checkpoint import (
    WeightsError,
    load_state_dict_strict,
    read_checkpoint,
    resolve_weights,
    save_checkpoint,
)

__all__ = [
    "PRESETS",
    "STAGE_DEFAULTS",
    "NonFiniteLossError",
    "TrainCallbacks",
    "TrainConfig",
    "TrainingError",
    "TrainingInterrupted",
    "check_precision",
    "preflight",
    "resolve_config",
    "run_worker",
    "train",
]


class TrainingError(RuntimeError):
    """A run that cannot start or go on (one-line message for the CLI)."""


class NonFiniteLossError(TrainingError):
    """The loss became inf/NaN; the last good checkpoint is kept."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved at ``step``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    """Every option of a run. ``None`` fields are filled by :func:`resolve_config`."""

    data: str = ""
    out: str = ""
    data_root: str | None = None
    stage: int = 1
    init: str | None = None
    init_from: str = "scratch"  # scratch | resume | init (resolved)
    arch: str = "pconv"
    layers: int = 7
    width: float = 1.0
    upsampling: str = "nearest"
    normalization: str = "minus_one_one"
    size: int = 256
    crop: str = "mmagic"
    crop_size: int | None = None
    flip: bool = True
    batch: int = 8
    steps: int | None = None
    lr: float | None = None
    masks: str = "irregular"
    invert_mask: bool = False
    workers: int = 4
    seed: int = 0
    freeze_encoder_bn: bool | None = None
    freeze_encoder: bool = False
    vgg_weights: str = "imagenet"
    loss_weights: dict[str, float] = field(default_factory=lambda: LossWeights().as_dict())
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

    @property
    def processes(self) -> int:
        """Worker processes on this machine (``--gpus`` or ``--nproc``; 1 by default)."""
        return self.gpus or self.nproc or 1


# Stage 1: Adam at 2e-4 with BN (paper). Stage 2: 5e-5 with the encoder's BN frozen.
# Step counts are MMagic's (Places365).
STAGE_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"lr": 2e-4, "steps": 800_000, "freeze_encoder_bn": False},
    2: {"lr": 5e-5, "steps": 500_000, "freeze_encoder_bn": True},
}

PRESETS: dict[str, dict[str, Any]] = {
    # A few minutes on 2 CPU cores: a narrow net at 128 px without VGG.
    "demo": {
        "layers": 6,
        "width": 0.25,
        "size": 128,
        "batch": 4,
        "steps": 400,
        "lr": 1e-3,
        "vgg_weights": "none",
        "workers": 1,
        "save_every": 200,
        "sample_every": 100,
        "log_every": 10,
    },
}

PRECISIONS = ("fp32", "bf16", "fp16")

# Sample-grid items use stream positions from here on (training never gets there).
_SAMPLE_POSITIONS = 2**62

# Options a resumed run may change; everything else comes from its config.json.
_RESUMABLE_OVERRIDES = {
    "steps", "workers", "device", "save_every", "keep_last", "sample_every", "log_every",
    "gpus", "nproc", "precision", "channels_last", "compile",
}  # fmt: skip


def resolve_config(overrides: dict[str, Any], *, resume: bool = False) -> TrainConfig:
    """Defaults < stage defaults < preset < ``overrides`` (keys of :class:`TrainConfig`).

    With ``resume`` the run dir's ``config.json`` is the base and only operational
    options (steps, workers, device, save/sample/log intervals) may be overridden.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(overrides) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise TrainingError(f"unknown training options: {', '.join(sorted(unknown))}")
    if resume:
        out = overrides.get("out")
        if not out:
            raise TrainingError("--resume needs --out RUN_DIR")
        saved = Path(out) / "config.json"
        if not saved.is_file():
            raise TrainingError(f"--resume: {saved} not found (is {out} a pconv run dir?)")
        config = TrainConfig(**json.loads(saved.read_text()))
        ignored = sorted(k for k in overrides if k not in _RESUMABLE_OVERRIDES | {"out"})
        config = replace(
            config, **{k: v for k, v in overrides.items() if k in _RESUMABLE_OVERRIDES}
        )
        config.init_from = "resume"
        config._ignored = ignored  # type: ignore[attr-defined]
        return config

    preset = overrides.get("preset")
    if preset is not None and preset not in PRESETS:
        raise TrainingError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    stage = overrides.get("stage", 1)
    if stage not in STAGE_DEFAULTS:
        raise TrainingError(f"--stage must be 1 or 2, got {stage}")
    values: dict[str, Any] = dict(STAGE_DEFAULTS[stage])
    if preset:
        values.update(PRESETS[preset])
    values.update(overrides)
    if values.get("init"):
        values.update(_architecture_from_init(values["init"], overrides))
        values["init_from"] = "init"
    elif stage == 2:
        raise TrainingError("--stage 2 fine-tunes a stage-1 model: pass --init CHECKPOINT")
    else:
        values["init_from"] = "scratch"
    config = TrainConfig(**values)
    _validate(config)
    return config


def _architecture_from_init(init: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The architecture of ``--init`` (any supported weights); conflicting options are errors."""
    try:
        _, metadata = resolve_weights(init, progress=False)
    except WeightsError as exc:
        raise TrainingError(f"--init: {exc}") from None
    arch = {
        "arch": metadata["arch"],
        "layers": int(metadata["layers"]),
        "width": float(metadata["width"]),
        "upsampling": metadata["upsampling"],
        "normalization": metadata["normalization"],
    }
    for key, value in arch.items():
        if key in overrides and overrides[key] != value:
            raise TrainingError(
                f"--{key} {overrides[key]} conflicts with --init {init} ({key} = {value})"
            )
    return arch


def _validate(config: TrainConfig) -> None:
    checks = [
        (config.batch >= 1, "--batch must be >= 1"),
        (config.steps is not None and config.steps >= 1, "--steps must be >= 1"),
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
            raise TrainingError(message)


# -- callbacks ---------------------------------------------------------------------------


class TrainCallbacks:
    """Hooks for progress display; the core itself prints nothing."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: device, steps, data set and model facts."""

    def on_step(self, step: int, loss: float) -> None:
        """After every optimizer step (``step`` counts completed steps)."""

    def on_log(self, record: dict[str, Any]) -> None:
        """Every ``log_every`` steps, with the record written to log.jsonl."""

    def on_message(self, text: str) -> None:
        """Something the user should see (skipped files, saved checkpoints, warnings)."""


# -- run directory -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def model_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.state.pt"

    def saved_steps(self) -> list[int]:
        """Steps with both a model and a state file, newest first."""
        steps = []
        for state in self.checkpoints.glob("step-*.state.pt"):
            try:
                step = int(state.name.split("-")[1].split(".")[0])
            except (IndexError, ValueError):
                continue
            if self.model_path(step).is_file():
                steps.append(step)
        return sorted(steps, reverse=True)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(
    run: RunDir,
    model: InpaintingModel,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    step: int,
    position: int,
    skipped: set[str],
    device: torch.device,
) -> Path:
    """State, then weights, then ``last.safetensors``: a crash leaves a complete older pair."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(device),
        "sampler_position": position,
        "scaler": scaler.state_dict(),
        "skipped": sorted(skipped),
    }
    atomic_write(run.state_path(step), lambda tmp: torch.save(state, tmp))
    meta = {"step": step, "stage": config.stage, "size": config.size}
    path = save_checkpoint(run.model_path(step), model, **meta)
    save_checkpoint(run.root / "last.safetensors", model, **meta)
    for old in run.saved_steps()[config.keep_last :]:
        run.state_path(old).unlink(missing_ok=True)
        run.model_path(old).unlink(missing_ok=True)
    return path


def _load_latest(
    run: RunDir,
    model: InpaintingModel,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> dict[str, Any]:
    """Load the newest checkpoint pair that reads back; older ones are the fallback."""
    errors = []
    for step in run.saved_steps():
        try:
            state_dict, _ = read_checkpoint(run.model_path(step))
            state = torch.load(run.state_path(step), map_location="cpu", weights_only=True)
        except Exception as exc:
            errors.append(f"step {step}: {exc}")
            continue
        load_state_dict_strict(model.net, state_dict, str(run.model_path(step)))
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"], device)
        return state
    detail = f" ({errors[0]})" if errors else ""
    raise TrainingError(f"--resume: no loadable checkpoint in {run.checkpoints}{detail}")


# -- images ------------------------------------------------------------------------------


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    t = t.detach().float().clamp(0, 1).cpu()
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def sample_grid(image: torch.Tensor, mask: torch.Tensor, output: torch.Tensor) -> Image.Image:
    """Rows of input (holes white) | mask (white = hole) | output | composite | truth."""
    comp = composite(image, output, mask)
    shown_input = image * mask + (1 - mask)
    rows = []
    for i in range(image.shape[0]):
        tiles = [shown_input[i], 1 - mask[i], output[i], comp[i], image[i]]
        rows.append(np.concatenate([_to_uint8(t) for t in tiles], axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))


def _save_png(path: Path, image: Image.Image) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def loss_curve(steps: list[int], losses: list[float], *, size=(640, 360)) -> Image.Image:
    """A plain line chart of the total loss against the step (log-scale y), drawn with PIL."""
    width, height = size
    left, right, top, bottom = 60, 16, 16, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    points = [(s, v) for s, v in zip(steps, losses, strict=True) if math.isfinite(v) and v > 0]
    if len(points) >= 2:
        xs = [s for s, _ in points]
        ys = [math.log10(v) for _, v in points]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        plot_w, plot_h = width - left - right, height - top - bottom

        def at(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * plot_w, top + (1 - (y - y0) / (y1 - y0)) * plot_h)

        draw.line([at(x, y) for x, y in zip(xs, ys, strict=True)], fill=(31, 119, 180), width=2)
        draw.text((4, top), f"{10**y1:.3g}", fill="black")
        draw.text((4, height - bottom - 10), f"{10**y0:.3g}", fill="black")
        draw.text((left, height - bottom + 6), f"step {x0}", fill="black")
        draw.text((width - right - 90, height - bottom + 6), f"step {x1}", fill="black")
    draw.text((left + 8, top + 4), "total loss (log scale)", fill="black")
    return image


# -- the loop ----------------------------------------------------------------------------


def _build_loss(config: TrainConfig, device: torch.device, callbacks: TrainCallbacks):
    weights = LossWeights(**config.loss_weights)
    vgg = None
    if str(config.vgg_weights).lower() == "none":
        if weights.perceptual or weights.style:
            callbacks.on_message(
                "warning: --vgg-weights none: training without the perceptual and style "
                "losses (the paper's loss needs them)"
            )
    else:
        vgg = load_vgg16_features(config.vgg_weights).to(device)
    return InpaintingLoss(weights, vgg).to(device)


def _data_loader(
    config: TrainConfig, dataset: InpaintingDataset, start: int, device, ctx: DistContext
):
    sampler = InfiniteSampler(
        len(dataset), seed=config.seed, start=start, rank=ctx.rank, num_replicas=ctx.world_size
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        prefetch_factor=2 if config.workers > 0 else None,
    )


def _fixed_samples(config: TrainConfig, dataset: InpaintingDataset) -> dict | None:
    """A fixed batch for the sample grids, from positions the training stream never reaches."""
    if config.samples <= 0:
        return None
    order = np.random.default_rng([config.seed, 7919]).permutation(len(dataset))
    keys = [(int(index), _SAMPLE_POSITIONS + k) for k, index in enumerate(order[: config.samples])]
    return collate([dataset[key] for key in keys])


_AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--precision``; an error if this device cannot run it."""
    dtype = _AMP_DTYPES[precision]
    if dtype is None:
        return None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise TrainingError("--precision bf16: this GPU has no bfloat16 support (use fp16)")
    try:
        with torch.autocast(device.type, dtype=dtype):
            probe = torch.ones(1, 1, 4, 4, device=device)
            torch.nn.functional.conv2d(probe, torch.ones(1, 1, 3, 3, device=device))
    except (RuntimeError, AssertionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingError(
            f"--precision {precision} is not available on {device} ({reason})"
        ) from None
    return dtype


def _native_cpu_half(dtype: torch.dtype) -> bool:
    """Whether oneDNN has native kernels for ``dtype`` on this CPU."""
    try:
        if dtype == torch.bfloat16:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return True  # cannot tell: say nothing


def _training_device(config: TrainConfig, ctx: DistContext) -> torch.device:
    device = resolve_device("cuda" if config.gpus else config.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device


def _prepare_model(config: TrainConfig, device: torch.device, ctx: DistContext):
    """The model on ``device`` (channels_last, SyncBN, frozen parts) and its trainable params."""
    torch.manual_seed(config.seed)  # every rank starts from the same weights
    model = build_model(
        config.arch, layers=config.layers, width=config.width, upsampling=config.upsampling,
        normalization=config.normalization,
    )  # fmt: skip
    if config.init_from == "init":  # a pconv, MMagic or naoto0804 file, or a registry name
        state_dict, _ = resolve_weights(config.init, progress=False)
        load_state_dict_strict(model.net, state_dict, config.init)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.enabled:
        convert_sync_batchnorm(model, device)
    if config.freeze_encoder or config.freeze_encoder_bn:
        if not hasattr(model.net, "freeze_encoder_bn"):
            raise TrainingError(f"--arch {config.arch} has no encoder BN to freeze")
        model.net.freeze_encoder_bn()
    if config.freeze_encoder:
        model.net.encoder.requires_grad_(False)
    model.train()
    return model, [p for p in model.parameters() if p.requires_grad]


def _wrap_for_training(model: InpaintingModel, config: TrainConfig, device, ctx: DistContext):
    """DDP across ranks, then ``torch.compile`` if asked: the module the loop calls."""
    step_model: torch.nn.Module = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        step_model = torch.compile(step_model)
    return step_model


def preflight(config: TrainConfig) -> None:
    """Checks a launcher runs once before starting workers: run dir, data, masks, VGG.

    Fetching the VGG weights here also means the workers find them in the cache
    instead of downloading them N times at once.
    """
    run = RunDir(Path(config.out))
    if config.init_from != "resume" and run.saved_steps():
        raise TrainingError(
            f"{run.root} already holds a run; continue it with --resume or choose another --out"
        )
    resolve_images(config.data, config.data_root)
    MaskSource.parse(config.masks, invert=config.invert_mask)
    if str(config.vgg_weights).lower() != "none":
        load_vgg16_features(config.vgg_weights)


def run_worker(config_data: dict[str, Any], callbacks_factory=None) -> dict[str, Any]:
    """Entry point of one launched worker process (see ``distributed.launch``)."""
    ctx = context_from_env()
    if not torch.cuda.is_available() or config_data.get("device") == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(ctx.world_size, 1)))
    config = TrainConfig(**config_data)
    callbacks = callbacks_factory() if (callbacks_factory and ctx.is_main) else None
    try:
        summary = train(config, callbacks)
    except (TrainingError, DataError, DeviceError, VGGWeightsError, MaskError, WeightsError) as exc:
        # An expected failure: one line, no traceback; the launcher stops the other ranks.
        print(f"Error: rank {ctx.rank}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        if callbacks is not None and hasattr(callbacks, "close"):
            callbacks.close()
    summary.pop("history", None)
    return summary


def train(config: TrainConfig, callbacks: TrainCallbacks | None = None) -> dict[str, Any]:
    """Run (or continue) training as ``config`` says; returns a summary dict.

    Under torchrun (or ``distributed.launch``) every rank calls this; only rank 0
    writes to the run directory and reports progress. Raises
    :class:`TrainingError` subclasses with one-line messages.
    """
    ctx = context_from_env()
    device = _training_device(config, ctx)
    created_group = init_process_group(ctx, device)
    try:
        return _train(config, callbacks if ctx.is_main else None, device, ctx)
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, callbacks, device: torch.device, ctx: DistContext) -> dict:
    callbacks = callbacks or TrainCallbacks()
    run = RunDir(Path(config.out))
    if config.init_from != "resume" and run.saved_steps():
        raise TrainingError(
            f"{run.root} already holds a run; continue it with --resume or choose another --out"
        )
    for name in getattr(config, "_ignored", []):
        callbacks.on_message(f"note: --{name.replace('_', '-')} is ignored with --resume")
    amp_dtype = check_precision(config.precision, device)
    if amp_dtype is not None and device.type == "cpu" and not _native_cpu_half(amp_dtype):
        callbacks.on_message(
            f"warning: this CPU has no native {config.precision} kernels (AVX512-BF16/AMX): "
            f"--precision {config.precision} runs emulated, far slower than fp32 here"
        )

    paths = resolve_images(config.data, config.data_root)
    masks = MaskSource.parse(config.masks, invert=config.invert_mask)
    dataset = InpaintingDataset(
        paths, masks, size=config.size, crop=config.crop, crop_size=config.crop_size,
        flip=config.flip, seed=config.seed,
    )  # fmt: skip
    loss_fn = _build_loss(config, device, callbacks)  # fails early when VGG is missing
    model, trainable = _prepare_model(config, device, ctx)
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")

    start_step, start_position, skipped = 0, 0, set()
    if config.init_from == "resume":
        state = _load_latest(run, model, optimizer, scaler, device)
        start_step, start_position = state["step"], state["sampler_position"]
        skipped = set(state.get("skipped", []))
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    if ctx.is_main:  # on resume too: the operational options may have changed
        run.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(config), indent=2) + "\n"
        atomic_write(run.root / "config.json", lambda tmp: tmp.write_text(text))
    step_model = _wrap_for_training(model, config, device, ctx)

    fixed = _fixed_samples(config, dataset) if ctx.is_main else None
    history = _read_history(run.root / "log.jsonl", start_step) if ctx.is_main else []
    per_step = config.batch * ctx.world_size  # positions of the sample stream per step
    total_steps = config.steps
    callbacks.on_start({
        "device": str(device) + (f" x {ctx.world_size} processes" if ctx.enabled else ""),
        "start_step": start_step,
        "steps": total_steps,
        "images": len(dataset),
        "masks": masks.describe(),
        "batch": config.batch,
        "global_batch": per_step,
        "precision": config.precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in trainable),
        "init_from": config.init_from,
        "lr": config.lr,
    })  # fmt: skip
    if start_step >= total_steps:
        callbacks.on_message(f"nothing to do: the run is at step {start_step} of {total_steps}")
        return {"step": start_step, "checkpoint": str(run.root / "last.safetensors")}

    def position(at_step: int) -> int:
        return start_position + (at_step - start_step) * per_step

    def save(at_step: int) -> Path | None:
        if not ctx.is_main:
            return None
        return _save(
            run, model, optimizer, scaler, config, at_step, position(at_step), skipped, device
        )

    loader = _data_loader(config, dataset, start_position, device, ctx)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    step = start_step
    sums: dict[str, float] = {}
    interval_images, interval_start, interval_first = 0, time.perf_counter(), start_step
    try:
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True, memory_format=memory_format)
            mask = batch["mask"].to(device, non_blocking=True)
            for path in batch["skipped"]:
                if path not in skipped:
                    skipped.add(path)
                    callbacks.on_message(f"skipped unreadable image {path} ({len(skipped)} so far)")

            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                output = step_model(image, mask)
                total, terms = loss_fn(output, image, mask)
            values = all_reduce_mean(torch.stack([total.detach(), *terms.values()]).float())
            loss_value = float(values[0])
            if not math.isfinite(loss_value):
                good = run.saved_steps()
                where = f"; the last good checkpoint is step {good[0]}" if good else ""
                raise NonFiniteLossError(f"loss is {loss_value} at step {step + 1}{where}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1

            sums["loss"] = sums.get("loss", 0.0) + loss_value
            for name, value in zip(terms, values[1:].tolist(), strict=True):
                sums[name] = sums.get(name, 0.0) + value
            interval_images += per_step
            callbacks.on_step(step, loss_value)

            if ctx.is_main and (step % config.log_every == 0 or step == total_steps):
                elapsed = time.perf_counter() - interval_start
                record = {"step": step, "lr": optimizer.param_groups[0]["lr"]}
                record.update({k: v / max(step - interval_first, 1) for k, v in sums.items()})
                record["images_per_s"] = interval_images / max(elapsed, 1e-9)
                record["global_batch"] = per_step
                record["skipped_images"] = len(skipped)
                _append_jsonl(run.root / "log.jsonl", record)
                history.append(record)
                callbacks.on_log(record)
            if step % config.log_every == 0 or step == total_steps:
                sums, interval_images = {}, 0
                interval_start, interval_first = time.perf_counter(), step
            if fixed is not None and (step % config.sample_every == 0 or step == total_steps):
                _write_samples(run, model, fixed, step, device)
            if step % config.save_every == 0 or step == total_steps:
                saved = save(step)
                if saved is not None:
                    curve = loss_curve([r["step"] for r in history], [r["loss"] for r in history])
                    _save_png(run.root / "loss.png", curve)
                    callbacks.on_message(f"saved {saved}")
            if step >= total_steps:
                break
    except KeyboardInterrupt:
        path = save(step)
        raise TrainingInterrupted(step, path or run.checkpoints) from None
    return {
        "step": step,
        "checkpoint": str(run.root / "last.safetensors"),
        "skipped_images": len(skipped),
        "history": history,
    }


def _write_samples(run: RunDir, model: InpaintingModel, fixed: dict, step: int, device) -> None:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        image = fixed["image"].to(device)
        mask = fixed["mask"].to(device)
        output = model(image, mask)
    model.train(was_training)
    _save_png(run.root / "samples" / f"step-{step:08d}.png", sample_grid(image, mask, output))


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def _read_history(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """Log records of earlier sessions of this run, up to the resumed step.

    Records past ``up_to_step`` (logged after the last checkpoint of an
    interrupted session) are dropped from the file too, so the log stays a clean
    history of the weights that exist.
    """
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= up_to_step:
            records.append(record)
    text = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return records
