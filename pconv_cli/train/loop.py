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

import contextlib
import importlib
import math
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pconv_cli.data.datasets import InfiniteSampler
from pconv_cli.data.images import save_png
from pconv_cli.devices import resolve_device
from pconv_cli.errors import Interrupted
from pconv_cli.files import atomic_write
from pconv_cli.models.registry import build_model, get_family, plugin_modules
from pconv_cli.nn.sync_batchnorm import convert_sync_batchnorm
from pconv_cli.train.config import TrainConfig, TrainingError
from pconv_cli.train.distributed import (
    DistContext,
    all_reduce_mean,
    context_from_env,
    init_process_group,
)
from pconv_cli.train.run_dir import RunDir, append_jsonl, read_history
from pconv_cli.train.tasks import NonFiniteLossError, StepContext, Task, get_task, task_modules
from pconv_cli.train.visuals import loss_curve
from pconv_cli.weights import open_weights
from pconv_cli.weights.checkpoint import load_state_dict_strict
from pconv_cli.weights.formats import converter_modules

__all__ = [
    "NonFiniteLossError",
    "TrainCallbacks",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "check_precision",
    "extension_modules",
    "preflight",
    "run_worker",
    "train",
    "training_device",
]

# Sample-grid items use stream positions from here on (training never gets there).
_SAMPLE_POSITIONS = 2**62
_AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingInterrupted(TrainingError, Interrupted):
    """Ctrl-C or SIGTERM: the run stopped at a step boundary (exit code 130).

    ``checkpoint`` is the one saved there, or None when a second signal stopped the
    run at once (nothing saved; the newest complete checkpoint stays).
    """

    exit_code = 130

    def __init__(self, step: int, checkpoint: Path | None, why: str = "interrupted"):
        saved = (
            f"saved {checkpoint}" if checkpoint else "nothing saved (the newest checkpoint stays)"
        )
        super().__init__(f"{why} at step {step}; {saved}")
        self.step = step
        self.checkpoint = checkpoint


class StopRequests:
    """While active (main thread only): SIGINT/SIGTERM ask the loop to stop at the next step
    boundary (``requested``); a second one raises ``KeyboardInterrupt`` at once. SIGHUP (a
    launched worker's launcher died; the kernel may repeat it) only asks, never escalates."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGHUP: not on Windows
                signum = getattr(signal, name, None)
                if signum is None:
                    continue
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signal.Signals(signum).name != "SIGHUP":
            raise KeyboardInterrupt
        self.requested = self.requested or signal.Signals(signum).name


def ignore_interrupts(worker_id: int) -> None:
    """A data loader process's start: Ctrl-C is for the training process, which stops cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        summary = train(config, callbacks)  # errors reach the launcher through the worker
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
        # rank 0 holds the run directory's lock: one run writes one --out at a time
        with RunDir(Path(config.out)).lock() if ctx.is_main else contextlib.nullcontext():
            trainer = Trainer(config, callbacks if ctx.is_main else None, device, ctx)
            trainer.setup()
            summary = trainer.fit()
        if created_group:
            dist.barrier()  # every rank ends together, after rank 0's last save
        return summary
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
        worker_init_fn=ignore_interrupts if config.workers > 0 else None,
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


class Trainer:
    """One run on one rank: :meth:`setup` (task, modules, optimizers, resume), then :meth:`fit`
    (steps until the end or a stop request), each step followed by :meth:`log`,
    :meth:`sample`, :meth:`validate` and :meth:`save` when their intervals come.

    Only rank 0 (``ctx.is_main``) writes the run directory and reports progress.
    """

    def __init__(
        self, config: TrainConfig, callbacks: TrainCallbacks | None, device: torch.device,
        ctx: DistContext,
    ):  # fmt: skip
        self.config, self.device, self.ctx = config, device, ctx
        self.callbacks = callbacks or TrainCallbacks()
        self.run = RunDir(Path(config.out))
        self.step = 0  # completed steps
        self.skipped: set[str] = set()
        self.best: float | None = None
        self.last_saved = -1

    # -- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Everything before the first step: checks, task and modules, optimizers, resume."""
        self._check()
        self._build()
        self.start_step, self.start_position = 0, 0
        if self.config.init_from == "resume":
            self._resume()
        self.step = self.last_saved = self.start_step
        config, ctx = self.config, self.ctx
        if ctx.is_main:  # on resume too: the operational options may have changed
            self.run.root.mkdir(parents=True, exist_ok=True)
            text = config.to_json()
            atomic_write(self.run.root / "config.json", lambda tmp: tmp.write_text(text))
        self.wrapped = {n: _wrap(m, config, self.device, ctx) for n, m in self.modules.items()}
        self.fixed, self.history = None, []
        if ctx.is_main:
            self.fixed = _fixed_samples(config, self.task, self.dataset)
            self.history = read_history(self.run.root / "log.jsonl", self.start_step)
        self.per_step = config.batch * ctx.world_size  # positions of the sample stream per step
        self.steps_per_epoch = max(1, math.ceil(len(self.dataset) / self.per_step))
        self.total_steps = (
            config.epochs * self.steps_per_epoch if config.epochs else config.steps
        )

    def _check(self) -> None:
        """A new run needs an empty --out; the precision must run on this device."""
        config = self.config
        if config.init_from != "resume" and self.run.saved_steps():
            raise TrainingError(
                f"{self.run.root} already holds a run; continue it with --resume or choose "
                "another --out"
            )
        self.amp_dtype = check_precision(config.precision, self.device)
        cpu = self.device.type == "cpu"
        if self.amp_dtype is not None and cpu and not _native_cpu_half(self.amp_dtype):
            self.callbacks.on_message(
                f"warning: this CPU has no native {config.precision} kernels (AVX512-BF16/AMX): "
                f"--precision {config.precision} runs emulated, far slower than fp32 here"
            )

    def _build(self) -> None:
        """The task and its modules on the device, ``--init`` loaded, optimizers and scalers."""
        config = self.config
        self.task = _build_task(config, self.device, self.callbacks)  # fails early on weights
        self.dataset = self.task.dataset()
        self.modules = self.task.modules()
        if config.init_from == "init":
            _load_init(config, self.task, self.modules, self.callbacks.on_message)
        for module in self.modules.values():
            _place(module, config, self.device, self.ctx)
        self.task.prepare()
        self.optimizers = self.task.configure_optimizers()
        self.scalers = {
            name: torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
            for name in self.optimizers
        }

    def _resume(self) -> None:
        """The newest complete checkpoint: modules, optimizers, scalers, RNG, stream position."""
        state = self.run.load_latest(
            modules=self.modules, primary=self.task.primary, on_skip=self.callbacks.on_message
        )
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            for group in optimizer.param_groups:
                group["lr"] = self.config.lr * group.get("lr_scale", 1.0)
        for name, scaler in self.scalers.items():
            if state.get("scalers", {}).get(name):
                scaler.load_state_dict(state["scalers"][name])
        _restore_rng(state["rng"], self.device)
        self.start_step, self.start_position = state["step"], state["sampler_position"]
        self.skipped, self.best = set(state.get("skipped", [])), state.get("best")

    def describe(self) -> dict[str, Any]:
        """What ``on_start`` shows: device, steps, data, batch, model facts."""
        parameters = [p for m in self.modules.values() for p in m.parameters()]
        config, ctx = self.config, self.ctx
        return {
            "device": str(self.device) + (f" x {ctx.world_size} processes" if ctx.enabled else ""),
            "arch": config.arch, "start_step": self.start_step, "steps": self.total_steps,
            "data": self.task.describe_data(), "batch": config.batch,
            "global_batch": self.per_step, "precision": config.precision,
            "parameters": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
            "init_from": config.init_from, "lr": config.lr, "epochs": config.epochs,
            "steps_per_epoch": self.steps_per_epoch,
        }  # fmt: skip

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Steps until ``total_steps`` or a stop request (then a save and TrainingInterrupted)."""
        self.callbacks.on_start(self.describe())
        if self.start_step >= self.total_steps:
            self.callbacks.on_message(
                f"nothing to do: the run is at step {self.start_step} of {self.total_steps}"
            )
            return {"step": self.start_step, "checkpoint": str(self.run.last)}
        loader = _data_loader(
            self.config, self.task, self.dataset, self.start_position, self.device, self.ctx
        )
        self._interval_reset()
        stop = StopRequests()
        try:
            with stop:
                for batch in loader:
                    stopping = self.train_step(batch, stop)
                    self.after_step()
                    if stopping and self.step < self.total_steps:
                        if self.last_saved != self.step:
                            self.save()
                        why = f"stopped by {stop.requested or 'a signal on another rank'}"
                        raise TrainingInterrupted(self.step, self.run.model_path(self.step), why)
                    if self.step >= self.total_steps:
                        break
        except KeyboardInterrupt:  # a second signal: stop now, save nothing half-done
            raise TrainingInterrupted(self.step, None, "interrupted twice") from None
        return {
            "step": self.step, "checkpoint": str(self.run.last),
            "skipped_images": len(self.skipped), "history": self.history,
        }  # fmt: skip

    def train_step(self, batch: dict, stop: StopRequests) -> bool:
        """One optimisation step of the task; True if any rank asked to stop."""
        for path in batch.get("skipped", []):
            if path not in self.skipped:
                self.skipped.add(path)
                self.callbacks.on_message(
                    f"skipped unreadable image {path} ({len(self.skipped)} so far)"
                )
        config = self.config
        lr = config.lr * config.lr_factor(self.step, self.steps_per_epoch, self.total_steps)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:  # lr_scale: a task's ratio to --lr
                group["lr"] = lr * group.get("lr_scale", 1.0)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        context = StepContext(
            modules=self.wrapped, optimizers=self.optimizers, scalers=self.scalers,
            device=self.device, amp_dtype=self.amp_dtype, memory_format=memory_format,
            step=self.step + 1, describe_failure=self.describe_failure,
        )  # fmt: skip
        terms = self.task.training_step(batch, context)
        # The stop request rides along with the loss terms: all ranks stop at one step.
        flags = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        values = all_reduce_mean(
            torch.cat([torch.stack([t.detach().float() for t in terms.values()]), flags])
        )
        stopping, values = bool(values[-1] > 0), values[:-1]
        self.step += 1
        for name, value in zip(terms, values.tolist(), strict=True):
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.interval_images += self.per_step
        self.callbacks.on_step(self.step, float(values[list(terms).index("loss")]))
        return stopping

    def after_step(self) -> None:
        """Log, samples, validation and checkpoints when their intervals come."""
        config, step = self.config, self.step
        end = step == self.total_steps
        if step % config.log_every == 0 or end:
            self.log()
        if self.fixed is not None and (step % config.sample_every == 0 or end):
            picture = self.task.sample(self.fixed)
            if picture is not None:
                save_png(self.run.sample_path(step), picture)
        epoch_end = bool(config.epochs) and step % self.steps_per_epoch == 0
        if epoch_end or end or (not config.epochs and step % config.save_every == 0):
            self.validate()
        if step % config.save_every == 0 or end or epoch_end:
            saved = self.save()
            if saved is not None:
                curve = loss_curve([r for r in self.history if "loss" in r])
                save_png(self.run.root / "loss.png", curve)
                self.callbacks.on_message(f"saved {saved}")

    def _interval_reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.interval_images = 0
        self.interval_start, self.interval_first = time.perf_counter(), self.step

    def log(self) -> None:
        """The log interval's mean of every term, lr and speed: log.jsonl and ``on_log``."""
        if self.ctx.is_main:
            elapsed = time.perf_counter() - self.interval_start
            lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
            record: dict[str, Any] = {"step": self.step, "lr": lr}
            done = max(self.step - self.interval_first, 1)
            record.update({k: v / done for k, v in self.sums.items()})
            record["images_per_s"] = self.interval_images / max(elapsed, 1e-9)
            record["global_batch"] = self.per_step
            record["skipped_images"] = len(self.skipped)
            append_jsonl(self.run.root / "log.jsonl", record)
            self.history.append(record)
            self.callbacks.on_log(record)
        self._interval_reset()

    def validate(self) -> None:
        """The task's validation metrics: logged, and ``best.safetensors`` when they improve."""
        metrics = self.task.validate()
        if not metrics or not self.ctx.is_main:
            return
        config, step = self.config, self.step
        record: dict[str, Any] = {"step": step, **{f"val_{k}": v for k, v in metrics.items()}}
        if config.epochs:
            record["epoch"] = step // self.steps_per_epoch
        append_jsonl(self.run.root / "log.jsonl", record)
        self.history.append(record)
        text = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        where = f"epoch {record['epoch']}" if config.epochs else f"step {step}"
        self.callbacks.on_message(f"{where}: {text}")
        key = self.task.best_metric
        if key is not None and (self.best is None or metrics[key] > self.best):
            self.best = metrics[key]
            self.run.save_best(self.task.model, **self.metadata(), best_metric=key, best=self.best)
            self.callbacks.on_message(f"new best {key} {self.best:.4g}: saved {self.run.best}")

    def metadata(self) -> dict[str, Any]:
        """What the checkpoints of this step say about themselves."""
        return {"step": self.step, "stage": self.config.stage, "size": self.config.size,
                **self.task.checkpoint_metadata()}  # fmt: skip

    def save(self) -> Path | None:
        """A complete checkpoint of this step (rank 0; None on the others)."""
        self.last_saved = self.step
        if not self.ctx.is_main:
            return None
        state = {
            "step": self.step,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "rng": _rng_state(self.device),
            "sampler_position": self.start_position
            + (self.step - self.start_step) * self.per_step,
            "skipped": sorted(self.skipped),
            "best": self.best,
        }
        return self.run.save(
            model=self.task.model, modules=self.modules, primary=self.task.primary, state=state,
            metadata=self.metadata(), keep_last=self.config.keep_last,
        )  # fmt: skip

    def describe_failure(self, name: str, value: float) -> str:
        """A non-finite loss, in one line naming the step and the last good checkpoint."""
        good = self.run.saved_steps()
        where = f"; the last good checkpoint is step {good[0]}" if good else ""
        what = "loss" if name == self.task.primary else f"{name} loss"
        return f"{what} is {value} at step {self.step + 1}{where}"
