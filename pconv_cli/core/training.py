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
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from pconv_cli.core.data import (
    InfiniteSampler,
    InpaintingDataset,
    MaskSource,
    collate,
    resolve_images,
)
from pconv_cli.core.devices import resolve_device
from pconv_cli.core.files import atomic_write
from pconv_cli.core.losses import InpaintingLoss, LossWeights, load_vgg16_features
from pconv_cli.core.unet import InpaintingModel, build_model, composite
from pconv_cli.core.weights import (
    WeightsError,
    load_state_dict_strict,
    read_checkpoint,
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
    "resolve_config",
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

# Sample-grid items use stream positions from here on (training never gets there).
_SAMPLE_POSITIONS = 2**62

# Options a resumed run may change; everything else comes from its config.json.
_RESUMABLE_OVERRIDES = {
    "steps", "workers", "device", "save_every", "keep_last", "sample_every", "log_every"
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
    """The architecture stored in ``--init``'s checkpoint; conflicting options are errors."""
    try:
        _, metadata = read_checkpoint(init)
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
    config: TrainConfig,
    step: int,
    skipped: set[str],
    device: torch.device,
) -> Path:
    """State, then weights, then ``last.safetensors``: a crash leaves a complete older pair."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(device),
        "sampler_position": step * config.batch,
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
    run: RunDir, model: InpaintingModel, optimizer: torch.optim.Optimizer, device: torch.device
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


def _data_loader(config: TrainConfig, dataset: InpaintingDataset, start: int, device):
    sampler = InfiniteSampler(len(dataset), seed=config.seed, start=start)
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


def train(config: TrainConfig, callbacks: TrainCallbacks | None = None) -> dict[str, Any]:
    """Run (or continue) training as ``config`` says; returns a summary dict.

    Raises :class:`TrainingError` subclasses with one-line messages.
    """
    callbacks = callbacks or TrainCallbacks()
    run = RunDir(Path(config.out))
    device = resolve_device(config.device)

    if config.init_from != "resume" and run.saved_steps():
        raise TrainingError(
            f"{run.root} already holds a run; continue it with --resume or choose another --out"
        )
    for name in getattr(config, "_ignored", []):
        callbacks.on_message(f"note: --{name.replace('_', '-')} is ignored with --resume")

    paths = resolve_images(config.data, config.data_root)
    masks = MaskSource.parse(config.masks, invert=config.invert_mask)
    dataset = InpaintingDataset(
        paths,
        masks,
        size=config.size,
        crop=config.crop,
        crop_size=config.crop_size,
        flip=config.flip,
        seed=config.seed,
    )
    loss_fn = _build_loss(config, device, callbacks)  # fails early when VGG is missing

    torch.manual_seed(config.seed)
    model = build_model(
        config.arch,
        layers=config.layers,
        width=config.width,
        upsampling=config.upsampling,
        normalization=config.normalization,
    )
    if config.init_from == "init":
        state_dict, _ = read_checkpoint(config.init)
        load_state_dict_strict(model.net, state_dict, config.init)
    model.to(device)
    if config.freeze_encoder or config.freeze_encoder_bn:
        if not hasattr(model.net, "freeze_encoder_bn"):
            raise TrainingError(f"--arch {config.arch} has no encoder BN to freeze")
        model.net.freeze_encoder_bn()
    if config.freeze_encoder:
        model.net.encoder.requires_grad_(False)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr)

    start_step, skipped = 0, set()
    if config.init_from == "resume":
        state = _load_latest(run, model, optimizer, device)
        start_step = state["step"]
        skipped = set(state.get("skipped", []))
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    else:
        run.root.mkdir(parents=True, exist_ok=True)
        public = {k: v for k, v in asdict(config).items()}
        atomic_write(
            run.root / "config.json",
            lambda tmp: tmp.write_text(json.dumps(public, indent=2) + "\n"),
        )

    fixed = _fixed_samples(config, dataset)
    history = _read_history(run.root / "log.jsonl", start_step)
    total_steps = config.steps
    callbacks.on_start(
        {
            "device": str(device),
            "start_step": start_step,
            "steps": total_steps,
            "images": len(dataset),
            "masks": masks.describe(),
            "batch": config.batch,
            "global_batch": config.batch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in trainable),
            "init_from": config.init_from,
            "lr": config.lr,
        }
    )
    if start_step >= total_steps:
        callbacks.on_message(f"nothing to do: the run is at step {start_step} of {total_steps}")
        return {"step": start_step, "checkpoint": str(run.root / "last.safetensors")}

    loader = _data_loader(config, dataset, start_step * config.batch, device)
    step = start_step
    sums: dict[str, float] = {}
    interval_images, interval_start = 0, time.perf_counter()
    last_saved = None
    try:
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            for path in batch["skipped"]:
                if path not in skipped:
                    skipped.add(path)
                    callbacks.on_message(f"skipped unreadable image {path} ({len(skipped)} so far)")

            output = model(image, mask)
            total, terms = loss_fn(output, image, mask)
            loss_value = float(total.detach())
            if not math.isfinite(loss_value):
                good = run.saved_steps()
                where = f"; the last good checkpoint is step {good[0]}" if good else ""
                raise NonFiniteLossError(f"loss is {loss_value} at step {step + 1}{where}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            step += 1

            sums["loss"] = sums.get("loss", 0.0) + loss_value
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            interval_images += image.shape[0]
            callbacks.on_step(step, loss_value)

            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - interval_start
                count = step - (history[-1]["step"] if history else start_step)
                record = {"step": step, "lr": optimizer.param_groups[0]["lr"]}
                record.update({k: v / max(count, 1) for k, v in sums.items()})
                record["images_per_s"] = interval_images / max(elapsed, 1e-9)
                record["skipped_images"] = len(skipped)
                _append_jsonl(run.root / "log.jsonl", record)
                history.append(record)
                callbacks.on_log(record)
                sums, interval_images, interval_start = {}, 0, time.perf_counter()
            if fixed is not None and (step % config.sample_every == 0 or step == total_steps):
                _write_samples(run, model, fixed, step, device)
            if step % config.save_every == 0 or step == total_steps:
                last_saved = _save(run, model, optimizer, config, step, skipped, device)
                _save_png(
                    run.root / "loss.png",
                    loss_curve([r["step"] for r in history], [r["loss"] for r in history]),
                )
                callbacks.on_message(f"saved {last_saved}")
            if step >= total_steps:
                break
    except KeyboardInterrupt:
        path = _save(run, model, optimizer, config, step, skipped, device)
        raise TrainingInterrupted(step, path) from None
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
