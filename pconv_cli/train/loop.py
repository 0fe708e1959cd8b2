"""One training loop for every family and every start: scratch, resume, init (stage 2, fine-tune).

Where a run starts is decided once (``init_from`` in the resolved config, as in
nanoGPT): ``scratch`` (fresh weights), ``resume`` (the newest complete checkpoint
of the same run dir: every module, optimizer and grad scaler, RNG, sample-stream
position), or ``init`` (weights from ``--init``; stage 2 and fine-tuning).
Everything after that is the same code; what a step does is the family's task
(:mod:`pconv_cli.train.tasks`). The run directory is described in
:mod:`pconv_cli.train.run_dir`.

Every random choice of a training item comes from ``(seed, position in the
sample stream)``, so the data depend on neither the number of data workers nor
the number of processes, and a resumed run continues exactly.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pconv_cli.data.datasets import DataError, InfiniteSampler
from pconv_cli.data.images import save_png
from pconv_cli.data.masks import MaskError
from pconv_cli.devices import DeviceError, resolve_device
from pconv_cli.files import atomic_write
from pconv_cli.models.registry import ModelError, build_model, get_family, plugin_modules
from pconv_cli.nn.sync_batchnorm import convert_sync_batchnorm
from pconv_cli.train.config import TrainConfig, TrainingError
from pconv_cli.train.distributed import (
    DistContext,
    all_reduce_mean,
    context_from_env,
    init_process_group,
)
from pconv_cli.train.losses import VGGWeightsError
from pconv_cli.train.run_dir import RunDir, append_jsonl, read_history
from pconv_cli.train.tasks import NonFiniteLossError, StepContext, Task, get_task, task_modules
from pconv_cli.train.visuals import loss_curve
from pconv_cli.weights import WeightsError, open_weights
from pconv_cli.weights.checkpoint import load_state_dict_strict
from pconv_cli.weights.formats import converter_modules

__all__ = [
    "EXPECTED_ERRORS",
    "NonFiniteLossError",
    "TrainCallbacks",
    "TrainingError",
    "TrainingInterrupted",
    "check_precision",
    "extension_modules",
    "preflight",
    "run_worker",
    "train",
    "training_device",
]

EXPECTED_ERRORS = (
    TrainingError, DataError, DeviceError, VGGWeightsError, MaskError, WeightsError, ModelError,
)  # fmt: skip
"""Errors with a one-line message for the user (no traceback)."""

# Sample-grid items use stream positions from here on (training never gets there).
_SAMPLE_POSITIONS = 2**62
_AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingInterrupted(TrainingError):
    """Ctrl-C: a checkpoint was saved at ``step``."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class TrainCallbacks:
    """Hooks for progress display; the loop itself prints nothing."""

    def on_start(self, info: dict[str, Any]) -> None:
        """Once, before the first step: device, steps, data and model facts."""

    def on_step(self, step: int, loss: float) -> None:
        """After every step (``step`` counts completed steps)."""

    def on_log(self, record: dict[str, Any]) -> None:
        """Every ``log_every`` steps, with the record written to log.jsonl."""

    def on_message(self, text: str) -> None:
        """Something the user should see (skipped files, saved checkpoints, warnings)."""


# -- devices and precision ---------------------------------------------------------------


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


def training_device(config: TrainConfig) -> torch.device:
    """The device a run trains on; ``--gpus`` without CUDA is an error that names ``--gpus``."""
    if config.gpus:
        if not torch.cuda.is_available():
            raise TrainingError(
                f"--gpus {config.gpus}: no CUDA GPU is available here "
                "(on CPUs: --device cpu --nproc N)"
            )
        return resolve_device("cuda")
    return resolve_device(config.device)


def _training_device(config: TrainConfig, ctx: DistContext) -> torch.device:
    device = training_device(config)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device


# -- launching ---------------------------------------------------------------------------


def extension_modules() -> list[str]:
    """Modules outside pconv that registered families, tasks or converters.

    A launcher passes them to its workers, which import them before training, so
    a family registered by a script or a test trains under DDP too.
    """
    return sorted({*plugin_modules(), *task_modules(), *converter_modules()})


def preflight(config: TrainConfig) -> None:
    """Checks a launcher runs once before starting workers: run dir, data, external weights."""
    run = RunDir(Path(config.out))
    if config.init_from != "resume" and run.saved_steps():
        raise TrainingError(
            f"{run.root} already holds a run; continue it with --resume or choose another --out"
        )
    get_task(get_family(config.arch).task).preflight(config)


def run_worker(
    config_data: dict[str, Any], callbacks_factory=None, extensions: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Entry point of one launched worker process (see ``distributed.launch``)."""
    ctx = context_from_env()
    if not torch.cuda.is_available() or config_data.get("device") == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(ctx.world_size, 1)))
    for module in extensions:
        importlib.import_module(module)
    config = TrainConfig(**config_data)
    callbacks = callbacks_factory() if (callbacks_factory and ctx.is_main) else None
    try:
        summary = train(config, callbacks)
    except EXPECTED_ERRORS as exc:
        # An expected failure: one line, no traceback; the launcher stops the other ranks.
        print(f"Error: rank {ctx.rank}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        if callbacks is not None and hasattr(callbacks, "close"):
            callbacks.close()
    summary.pop("history", None)
    return summary


def launch_config(config: TrainConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What :func:`run_worker` needs, picklable: the config as a dict and the extension modules."""
    return asdict(config), tuple(extension_modules())


# -- the loop ----------------------------------------------------------------------------


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


def _build_task(config: TrainConfig, device: torch.device, callbacks: TrainCallbacks) -> Task:
    """The model (seeded: every rank starts from the same weights) and its family's task."""
    family = get_family(config.arch)
    torch.manual_seed(config.seed)
    options = dict(config.model)
    if config.pretrained and config.init_from == "scratch":  # e.g. torchvision's weights
        options["weights"] = config.pretrained
    model = build_model(family.name, **options)
    return get_task(family.task)(config, model, device=device, log=callbacks.on_message)


def _load_init(config: TrainConfig, task: Task, modules: dict[str, nn.Module], log) -> None:
    """``--init``: the model's weights, and those of other modules when the file has them."""
    weights = open_weights(config.init, progress=False)
    load_state_dict_strict(task.model.net, weights.net_state(), config.init)
    for name, module in modules.items():
        if name == task.primary:
            continue
        state = weights.module_state(name)
        if state is None:
            log(f"note: --init {config.init} has no {name} weights; it starts from scratch")
        else:
            load_state_dict_strict(module, state, f"{config.init} ({name})")


def _place(module: nn.Module, config: TrainConfig, device: torch.device, ctx: DistContext):
    module.to(device)
    if config.channels_last:
        module.to(memory_format=torch.channels_last)
    if config.sync_bn and ctx.enabled:
        convert_sync_batchnorm(module, device)


def _wrap(module: nn.Module, config: TrainConfig, device: torch.device, ctx: DistContext):
    """DDP across ranks (modules with trainable parameters), then ``torch.compile`` if asked."""
    wrapped: nn.Module = module
    if ctx.enabled and any(p.requires_grad for p in module.parameters()):
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _data_loader(config: TrainConfig, task: Task, dataset, start: int, device, ctx):
    sampler = InfiniteSampler(
        len(dataset), seed=config.seed, start=start, rank=ctx.rank, num_replicas=ctx.world_size
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=task.collate,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        prefetch_factor=2 if config.workers > 0 else None,
    )


def _fixed_samples(config: TrainConfig, task: Task, dataset) -> dict | None:
    """A fixed batch for the sample grids, from positions the training stream never reaches."""
    if config.samples <= 0:
        return None
    order = np.random.default_rng([config.seed, 7919]).permutation(len(dataset))
    keys = [(int(index), _SAMPLE_POSITIONS + k) for k, index in enumerate(order[: config.samples])]
    return task.collate([dataset[key] for key in keys])


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _train(config: TrainConfig, callbacks, device: torch.device, ctx: DistContext) -> dict:
    callbacks = callbacks or TrainCallbacks()
    run = RunDir(Path(config.out))
    if config.init_from != "resume" and run.saved_steps():
        raise TrainingError(
            f"{run.root} already holds a run; continue it with --resume or choose another --out"
        )
    amp_dtype = check_precision(config.precision, device)
    if amp_dtype is not None and device.type == "cpu" and not _native_cpu_half(amp_dtype):
        callbacks.on_message(
            f"warning: this CPU has no native {config.precision} kernels (AVX512-BF16/AMX): "
            f"--precision {config.precision} runs emulated, far slower than fp32 here"
        )

    task = _build_task(config, device, callbacks)  # fails early when external weights miss
    dataset = task.dataset()
    modules = task.modules()
    if config.init_from == "init":
        _load_init(config, task, modules, callbacks.on_message)
    for module in modules.values():
        _place(module, config, device, ctx)
    task.prepare()
    optimizers = task.configure_optimizers()
    scalers = {
        name: torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        for name in optimizers
    }

    start_step, start_position, skipped, best = 0, 0, set(), None
    if config.init_from == "resume":
        state = run.load_latest(modules=modules, primary=task.primary, on_skip=callbacks.on_message)
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            for group in optimizer.param_groups:
                group["lr"] = config.lr * group.get("lr_scale", 1.0)
        for name, scaler in scalers.items():
            if state.get("scalers", {}).get(name):
                scaler.load_state_dict(state["scalers"][name])
        _restore_rng(state["rng"], device)
        start_step, start_position = state["step"], state["sampler_position"]
        skipped, best = set(state.get("skipped", [])), state.get("best")
    if ctx.is_main:  # on resume too: the operational options may have changed
        run.root.mkdir(parents=True, exist_ok=True)
        text = config.to_json()
        atomic_write(run.root / "config.json", lambda tmp: tmp.write_text(text))
    wrapped = {name: _wrap(m, config, device, ctx) for name, m in modules.items()}

    fixed = _fixed_samples(config, task, dataset) if ctx.is_main else None
    history = read_history(run.root / "log.jsonl", start_step) if ctx.is_main else []
    per_step = config.batch * ctx.world_size  # positions of the sample stream per step
    steps_per_epoch = max(1, math.ceil(len(dataset) / per_step))
    total_steps = config.epochs * steps_per_epoch if config.epochs else config.steps
    parameters = [p for m in modules.values() for p in m.parameters()]
    callbacks.on_start({
        "device": str(device) + (f" x {ctx.world_size} processes" if ctx.enabled else ""),
        "arch": config.arch,
        "start_step": start_step,
        "steps": total_steps,
        "data": task.describe_data(),
        "batch": config.batch,
        "global_batch": per_step,
        "precision": config.precision,
        "parameters": sum(p.numel() for p in parameters),
        "trainable": sum(p.numel() for p in parameters if p.requires_grad),
        "init_from": config.init_from,
        "lr": config.lr,
        "epochs": config.epochs,
        "steps_per_epoch": steps_per_epoch,
    })  # fmt: skip
    if start_step >= total_steps:
        callbacks.on_message(f"nothing to do: the run is at step {start_step} of {total_steps}")
        return {"step": start_step, "checkpoint": str(run.last)}

    def save(at_step: int) -> Path | None:
        if not ctx.is_main:
            return None
        state = {
            "step": at_step,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in scalers.items()},
            "rng": _rng_state(device),
            "sampler_position": start_position + (at_step - start_step) * per_step,
            "skipped": sorted(skipped),
            "best": best,
        }
        return run.save(
            model=task.model, modules=modules, primary=task.primary, state=state,
            metadata=metadata(at_step), keep_last=config.keep_last,
        )  # fmt: skip

    def metadata(at_step: int) -> dict[str, Any]:
        return {"step": at_step, "stage": config.stage, "size": config.size,
                **task.checkpoint_metadata()}  # fmt: skip

    def validate(at_step: int) -> None:
        """The task's validation metrics: logged, and ``best.safetensors`` when they improve."""
        nonlocal best
        metrics = task.validate()
        if not metrics or not ctx.is_main:
            return
        record = {"step": at_step, **{f"val_{k}": v for k, v in metrics.items()}}
        if config.epochs:
            record["epoch"] = at_step // steps_per_epoch
        append_jsonl(run.root / "log.jsonl", record)
        history.append(record)
        text = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        where = f"epoch {record['epoch']}" if config.epochs else f"step {at_step}"
        callbacks.on_message(f"{where}: {text}")
        key = task.best_metric
        if key is not None and (best is None or metrics[key] > best):
            best = metrics[key]
            run.save_best(task.model, **metadata(at_step), best_metric=key, best=best)
            callbacks.on_message(f"new best {key} {best:.4g}: saved {run.best}")

    def describe_failure(name: str, value: float) -> str:
        good = run.saved_steps()
        where = f"; the last good checkpoint is step {good[0]}" if good else ""
        what = "loss" if name == task.primary else f"{name} loss"
        return f"{what} is {value} at step {step + 1}{where}"

    loader = _data_loader(config, task, dataset, start_position, device, ctx)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    step = start_step
    sums: dict[str, float] = {}
    interval_images, interval_start, interval_first = 0, time.perf_counter(), start_step
    try:
        for batch in loader:
            for path in batch.get("skipped", []):
                if path not in skipped:
                    skipped.add(path)
                    callbacks.on_message(f"skipped unreadable image {path} ({len(skipped)} so far)")
            lr = config.lr * config.lr_factor(step, steps_per_epoch, total_steps)
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:  # lr_scale: a task's ratio to --lr
                    group["lr"] = lr * group.get("lr_scale", 1.0)
            context = StepContext(
                modules=wrapped, optimizers=optimizers, scalers=scalers, device=device,
                amp_dtype=amp_dtype, memory_format=memory_format, step=step + 1,
                describe_failure=describe_failure,
            )  # fmt: skip
            terms = task.training_step(batch, context)
            values = all_reduce_mean(torch.stack([t.detach().float() for t in terms.values()]))
            step += 1
            for name, value in zip(terms, values.tolist(), strict=True):
                sums[name] = sums.get(name, 0.0) + value
            interval_images += per_step
            callbacks.on_step(step, float(values[list(terms).index("loss")]))

            if ctx.is_main and (step % config.log_every == 0 or step == total_steps):
                elapsed = time.perf_counter() - interval_start
                record = {"step": step, "lr": next(iter(optimizers.values())).param_groups[0]["lr"]}
                record.update({k: v / max(step - interval_first, 1) for k, v in sums.items()})
                record["images_per_s"] = interval_images / max(elapsed, 1e-9)
                record["global_batch"] = per_step
                record["skipped_images"] = len(skipped)
                append_jsonl(run.root / "log.jsonl", record)
                history.append(record)
                callbacks.on_log(record)
            if step % config.log_every == 0 or step == total_steps:
                sums, interval_images = {}, 0
                interval_start, interval_first = time.perf_counter(), step
            if fixed is not None and (step % config.sample_every == 0 or step == total_steps):
                picture = task.sample(fixed)
                if picture is not None:
                    save_png(run.sample_path(step), picture)
            epoch_end = config.epochs and step % steps_per_epoch == 0
            if epoch_end or step == total_steps or (
                not config.epochs and step % config.save_every == 0
            ):
                validate(step)
            if step % config.save_every == 0 or step == total_steps or epoch_end:
                saved = save(step)
                if saved is not None:
                    curve = loss_curve([r for r in history if "loss" in r])
                    save_png(run.root / "loss.png", curve)
                    callbacks.on_message(f"saved {saved}")
            if step >= total_steps:
                break
    except KeyboardInterrupt:
        path = save(step)
        raise TrainingInterrupted(step, path or run.checkpoints) from None
    return {
        "step": step,
        "checkpoint": str(run.last),
        "skipped_images": len(skipped),
        "history": history,
    }
