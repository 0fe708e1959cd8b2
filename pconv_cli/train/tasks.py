"""Training tasks: what one model family does in a training step. The trainer stays generic.

A :class:`Task` owns its modules by name (``generator``, ``discriminator``, ...),
its losses and its optimizers, and turns a batch into a step, returning named
loss terms. The trainer (:mod:`pconv_cli.train.loop`) owns everything else:
devices, DDP, precision and grad scalers, the data stream and its position,
checkpoints of every module and optimizer by name, logs, samples, progress,
Ctrl-C/SIGTERM and non-finite losses.

A family names its task when it registers (``register_model(..., task="pconv")``)
and the task registers under that name with :func:`register_task`, in the
family's folder (``pconv_cli/models/<family>/``). A family registered without a
task cannot be trained. :class:`InpaintingTask` is the base of inpainting tasks
(data, samples); :class:`~pconv_cli.train.gan.GANTask` adds a discriminator.

Conventions: images float RGB in [0, 1], masks 1 = valid, 0 = hole.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from pconv_cli.data.datasets import InpaintingDataset, MaskSource, collate, resolve_images
from pconv_cli.models.families import load_families
from pconv_cli.train.distributed import all_reduce_mean
from pconv_cli.train.errors import TrainingError
from pconv_cli.train.visuals import sample_grid

if TYPE_CHECKING:
    from pconv_cli.train.config import TrainConfig

__all__ = [
    "InpaintingTask",
    "NonFiniteLossError",
    "StepContext",
    "Task",
    "get_task",
    "list_tasks",
    "register_task",
    "task_modules",
]


class NonFiniteLossError(TrainingError):
    """A loss became inf/NaN; no optimizer stepped on it, the last good checkpoint is kept."""


class StepContext:
    """What the loop lends a task for one training step.

    - ``modules``: the task's modules wrapped for DDP / ``torch.compile``: call
      these in :meth:`Task.training_step`, not the task's own references;
    - ``device``, ``memory_format`` (``channels_last`` or contiguous), ``step``
      (the number of the step being taken, from 1);
    - :meth:`autocast`: the run's mixed-precision context;
    - :meth:`update`: backward a loss and step one optimizer.
    """

    def __init__(
        self,
        *,
        modules: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        scalers: Mapping[str, torch.amp.GradScaler],
        device: torch.device,
        amp_dtype: torch.dtype | None,
        memory_format: torch.memory_format,
        step: int,
        describe_failure: Callable[[str, float], str],
    ):
        self.modules = modules
        self.device = device
        self.memory_format = memory_format
        self.step = step
        self._optimizers = optimizers
        self._scalers = scalers
        self._amp_dtype = amp_dtype
        self._describe_failure = describe_failure

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for ``--precision bf16|fp16``, a no-op for fp32."""
        return torch.autocast(
            self.device.type, dtype=self._amp_dtype, enabled=self._amp_dtype is not None
        )

    def update(self, name: str, loss: Tensor, *, max_grad_norm: float | None = None) -> None:
        """Backpropagate ``loss`` and step optimizer ``name`` (through its grad scaler).

        The loss is averaged over ranks first: if it is not finite on any rank,
        :class:`NonFiniteLossError` is raised before any gradient or weight changes.
        ``max_grad_norm`` clips the total norm of the optimizer's (unscaled) gradients.
        """
        value = float(all_reduce_mean(loss.detach().float().reshape(1))[0])
        if not math.isfinite(value):
            raise NonFiniteLossError(self._describe_failure(name, value))
        optimizer, scaler = self._optimizers[name], self._scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if max_grad_norm is not None:
            scaler.unscale_(optimizer)
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()


class Task:
    """How one model family trains. Subclass, set the class attributes, implement the hooks.

    Class attributes (read before anything is built):

    - ``primary``: name of the module that is the model (saved as the checkpoint's net);
    - ``stage_defaults``: per ``--stage``, option defaults (``lr``, ``steps``, ...);
    - ``init_stages``: stages that need ``--init``; ``finetune_stage``: the stage
      ``pconv finetune`` trains;
    - ``presets``: ``--preset`` name -> options (``"model"``: model options;
      ``"stages"``: stage -> options that stage uses instead);
    - ``loss_weights``: default weight of every named loss term (``--loss-*``).

    An instance is built by the loop with the resolved config, the model (built by
    the registry and seeded) and the device; ``log(text)`` shows a message.
    """

    primary: ClassVar[str] = "generator"
    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {1: {"lr": 1e-4, "steps": 10_000}}
    init_stages: ClassVar[frozenset[int]] = frozenset()
    finetune_stage: ClassVar[int] = 1
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    loss_weights: ClassVar[Mapping[str, float]] = {}

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        *,
        device: torch.device,
        log: Callable[[str], None] = lambda text: None,
    ):
        self.config = config
        self.model = model
        self.device = device
        self.log = log

    @classmethod
    def resolve_loss_weights(cls, given: Mapping[str, float] | None) -> dict[str, float]:
        """The task's default loss weights updated by ``given``; unknown names are errors."""
        weights = dict(cls.loss_weights)
        unknown = sorted(set(given or {}) - set(weights))
        if unknown:
            known = ", ".join(weights) or "none"
            raise TrainingError(f"unknown loss term {', '.join(unknown)} (this task's: {known})")
        weights.update(given or {})
        return weights

    @classmethod
    def preflight(cls, config: TrainConfig) -> None:
        """Checks a launcher runs once before any worker starts (data, external weights)."""

    def dataset(self) -> Dataset:
        """Training items, indexed by ``(index, position)`` keys of the sample stream."""
        raise NotImplementedError

    @staticmethod
    def collate(items: list[dict]) -> dict:
        """A batch from items (the DataLoader's ``collate_fn``: a static method, so data loader
        processes receive the function, never the task and what it holds)."""
        return collate(items)

    def describe_data(self) -> str:
        """A few words on the data, for the start-up line."""
        return ""

    def modules(self) -> dict[str, nn.Module]:
        """Every module the run checkpoints, by name; ``modules()[primary]`` is the model."""
        return {self.primary: self.model}

    def prepare(self) -> None:
        """Called once the modules are on the device: freeze parts, set train mode."""
        for module in self.modules().values():
            module.train()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per module name that :meth:`training_step` updates. The loop sets
        every group's ``lr`` to ``--lr`` (times the schedule) times the group's
        ``lr_scale`` (default 1): how a task gives one module a different rate."""
        raise NotImplementedError

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        """One step: forward, :meth:`StepContext.update` per optimizer; named loss terms.

        Return detached scalar tensors; ``"loss"`` is the one progress shows.
        """
        raise NotImplementedError

    def sample(self, batch: dict) -> Image.Image | None:
        """A picture of the model on a fixed batch (None: the task writes no samples)."""
        return None

    best_metric: ClassVar[str | None] = None
    """The :meth:`validate` metric whose maximum ``best.safetensors`` keeps (None: no best)."""

    def validate(self) -> dict[str, float] | None:
        """Metrics on held-out data, called by every rank at epoch ends (None: no validation)."""
        return None

    def checkpoint_metadata(self) -> dict[str, Any]:
        """Extra metadata for the task's checkpoints (e.g. a classifier's class names)."""
        return {}


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator registering a :class:`Task` subclass under ``name``."""

    def decorator(cls: type[Task]) -> type[Task]:
        _TASKS[name] = cls
        return cls

    return decorator


def get_task(name: str | None) -> type[Task]:
    """The task class registered as ``name`` (the families' tasks are loaded first)."""
    load_families()
    if name is None:
        raise TrainingError("this model family has no training task (it is inference only)")
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(list_tasks())
        raise TrainingError(f"no training task {name!r}; known: {known}") from None


def list_tasks() -> list[str]:
    """Names of the registered tasks."""
    load_families()
    return list(_TASKS)


def task_modules() -> list[str]:
    """Modules outside pconv that registered tasks (worker processes import them again)."""
    modules = {cls.__module__ for cls in _TASKS.values()}
    return sorted(m for m in modules if not m.startswith("pconv_cli."))


# --------------------------------------------------------------------------- inpainting


class InpaintingTask(Task):
    """Base of the inpainting tasks: images + masks in, sample grids out.

    Items are random crops of ``--data`` with masks from ``--masks`` (see
    :class:`~pconv_cli.data.datasets.InpaintingDataset`); samples show input |
    mask | output | composite | truth.
    """

    def dataset(self) -> InpaintingDataset:
        c = self.config
        self._masks = MaskSource.parse(c.masks, invert=c.invert_mask, hole_ratio=c.hole_ratio)
        self._dataset = InpaintingDataset(
            resolve_images(c.data, c.data_root), self._masks, size=c.size, crop=c.crop,
            crop_size=c.crop_size, flip=c.flip, seed=c.seed,
        )  # fmt: skip
        return self._dataset

    def describe_data(self) -> str:
        return f"{len(self._dataset)} images, masks {self._masks.describe()}"

    @classmethod
    def preflight(cls, config: TrainConfig) -> None:
        resolve_images(config.data, config.data_root)
        MaskSource.parse(config.masks, invert=config.invert_mask, hole_ratio=config.hole_ratio)

    def inputs(self, batch: dict, step: StepContext) -> tuple[Tensor, Tensor]:
        """The batch's image (in the run's memory format) and mask on the device."""
        image = batch["image"].to(step.device, non_blocking=True, memory_format=step.memory_format)
        mask = batch["mask"].to(step.device, non_blocking=True)
        return image, mask

    def sample(self, batch: dict) -> Image.Image:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            image = batch["image"].to(self.device)
            mask = batch["mask"].to(self.device)
            output = self.model(image, mask)
        self.model.train(was_training)
        return sample_grid(image, mask, output)
