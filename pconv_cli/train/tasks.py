"""Training tasks: what one model family does in a training step. The loop stays generic.

A :class:`Task` owns its modules by name (``generator``, ``discriminator``, ...),
its losses and its optimizers, and turns a batch into a step, returning named
loss terms. The loop (:mod:`pconv_cli.train.loop`) owns everything else:
devices, DDP, precision and grad scalers, the data stream and its position,
checkpoints of every module and optimizer by name, logs, samples, progress,
Ctrl-C and non-finite losses.

A family names its task when it registers (``register_model(..., task="inpainting")``);
tasks register under that name with :func:`register_task`. Built in:
``inpainting`` (:class:`PConvTask`, the paper's loss, one Adam) and ``deepfillv2``
(:class:`DeepFillTask`, a GAN: a discriminator step, then a generator step) and
``classification`` (:class:`ClassifyTask`, torchvision classifiers on image folders).

Conventions: images float RGB in [0, 1], masks 1 = valid, 0 = hole.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from pconv_cli.data.datasets import InpaintingDataset, MaskSource, collate, resolve_images
from pconv_cli.models.registry import get_family
from pconv_cli.train.distributed import all_reduce_mean
from pconv_cli.train.errors import TrainingError
from pconv_cli.train.losses import InpaintingLoss, LossWeights, load_vgg16_features
from pconv_cli.train.visuals import sample_grid

if TYPE_CHECKING:
    from pconv_cli.train.config import TrainConfig

__all__ = [
    "ClassifyTask",
    "DeepFillTask",
    "InpaintingTask",
    "NonFiniteLossError",
    "PConvTask",
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

    def collate(self, items: list[dict]) -> dict:
        """A batch from items (the DataLoader's ``collate_fn``)."""
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


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (importing the ``task_module`` of the families
    it trains, if it is not registered yet)."""
    if name not in _TASKS:
        import importlib

        from pconv_cli.models.registry import task_modules_of

        for module in task_modules_of(name):
            importlib.import_module(module)
    try:
        return _TASKS[name]
    except KeyError:
        known = ", ".join(list_tasks())
        raise TrainingError(f"no training task {name!r}; known: {known}") from None


def list_tasks() -> list[str]:
    """Names of the registered tasks."""
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


@register_task("inpainting")
class PConvTask(InpaintingTask):
    """The PConv U-Net's training (Liu et al. 2018; MMagic's recipe), also for ``unet``.

    Loss: ``1*valid + 6*hole + 0.05*perceptual + 120*style + 0.1*TV`` (each term
    logged), one Adam. Stage 1 from scratch (lr 2e-4); stage 2 fine-tunes
    ``--init`` with lr 5e-5 and the encoder's BatchNorm frozen.
    """

    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"lr": 2e-4, "steps": 800_000, "freeze_encoder_bn": False},
        2: {"lr": 5e-5, "steps": 500_000, "freeze_encoder_bn": True},
    }  # Step counts are MMagic's (Places365).
    init_stages: ClassVar[frozenset[int]] = frozenset({2})
    finetune_stage: ClassVar[int] = 2
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # A few minutes on 2 CPU cores: a narrow net at 128 px without VGG.
        "demo": {
            "model": {"layers": 6, "width": 0.25},
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
        # The bundled default model (zoo entry pconv-bsds300): BSDS300's 200 training
        # photos on 2 CPU cores, no VGG (L1 + TV), holes of 1-60 % in all mask kinds.
        # Stage 1: 128 px crops at the 0.8 scale of 256 px evaluation images; stage 2
        # (--stage 2 --out RUN): 256 px (the same scale), encoder BN frozen, TV weight 6.
        "default-model": {
            "model": {"layers": 7, "width": 0.5},
            "size": 128,
            "crop_size": 160,
            "masks": "mixed",
            "hole_ratio": "0.01-0.6",
            "batch": 8,
            "steps": 7_000,
            "lr": 5e-4,
            "lr_schedule": "cosine",
            "vgg_weights": "none",
            "workers": 1,
            "save_every": 500,
            "keep_last": 20,
            "sample_every": 1000,
            "log_every": 50,
            "stages": {
                2: {
                    "size": 256,
                    "crop_size": None,
                    "batch": 4,
                    "steps": 800,
                    "lr": 1e-4,
                    "loss_weights": {"tv": 6.0},  # smoother fills: higher SSIM, PSNR kept
                },
            },
        },
    }
    loss_weights: ClassVar[Mapping[str, float]] = LossWeights().as_dict()

    def _build_loss(self) -> InpaintingLoss:
        weights = LossWeights(**self.config.loss_weights)
        vgg = None
        if str(self.config.vgg_weights).lower() == "none":
            if weights.perceptual or weights.style:
                self.log(
                    "warning: --vgg-weights none: training without the perceptual and style "
                    "losses (the paper's loss needs them)"
                )
        else:
            vgg = load_vgg16_features(self.config.vgg_weights).to(self.device)
        return InpaintingLoss(weights, vgg).to(self.device)

    @classmethod
    def preflight(cls, config: TrainConfig) -> None:
        super().preflight(config)
        if str(config.vgg_weights).lower() != "none":
            load_vgg16_features(config.vgg_weights)  # fetched once here, not by every worker

    def prepare(self) -> None:
        self.loss = self._build_loss()
        net = self.model.net
        if self.config.freeze_encoder or self.config.freeze_encoder_bn:
            if not hasattr(net, "freeze_encoder_bn"):
                raise TrainingError(f"--arch {self.config.arch} has no encoder BN to freeze")
            net.freeze_encoder_bn()
        if self.config.freeze_encoder:
            net.encoder.requires_grad_(False)
        super().prepare()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return {"generator": torch.optim.Adam(trainable, lr=self.config.lr)}

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        image, mask = self.inputs(batch, step)
        with step.autocast():
            output = step.modules["generator"](image, mask)
            total, terms = self.loss(output, image, mask)
        step.update("generator", total)
        return {"loss": total.detach(), **terms}


def masked_l1(output: Tensor, target: Tensor, weight: Tensor, eps: float = 1e-12) -> Tensor:
    """``sum(|output - target| * weight) / sum(weight)``, ``weight`` (N, 1, H, W) over channels.

    Under DDP the denominator is the mean over ranks of ``sum(weight)``, so the
    average of the ranks' losses is the global batch's masked mean (and DDP trains
    what one process with the global batch would).
    """
    weight = weight.expand_as(output)
    total = all_reduce_mean(weight.sum().detach().reshape(1))[0]
    return ((output - target).abs() * weight).sum() / (total + eps)


@register_task("deepfillv2")
class DeepFillTask(InpaintingTask):
    """DeepFillv2's training (MMagic's ``TwoStageInpaintor`` recipe) on the generic loop.

    Per step, after one generator forward: a discriminator update (hinge loss on
    the stage-2 composite and the truth, each with the hole mask) then a generator
    update: L1 over hole and over valid pixels for the stage-1 and stage-2 raw
    outputs (weight 1 each, each averaged over its pixels of the global batch) plus 0.1 x the hinge
    adversarial loss on the stage-2 composite. Losses are computed on the
    network's normalised scale ([-1, 1]), as MMagic does; hinge terms and spectral
    norms run in float32. Adam at lr 1e-4 for both nets.

    Unlike MMagic, the discriminator sees the fake and the real batch in one call
    (DDP allows one forward per backward), so its spectral norms take one power
    iteration per step instead of two.
    """

    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"lr": 1e-4, "steps": 1_000_000},  # MMagic: 1M iterations at global batch 16
    }
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # About 2 minutes on 2 CPU cores: a quarter-width net at 96 px.
        "demo": {
            "model": {"width": 0.25},
            "size": 96,
            "batch": 4,
            "steps": 400,
            "lr": 5e-4,
            "workers": 1,
            "save_every": 100,
            "sample_every": 50,
            "log_every": 10,
        },
    }
    loss_weights: ClassVar[Mapping[str, float]] = {
        "l1_hole": 1.0,
        "l1_valid": 1.0,
        "adversarial": 0.1,
    }

    def __init__(self, config: TrainConfig, model: nn.Module, **kwargs: Any):
        super().__init__(config, model, **kwargs)
        family = get_family(config.arch)
        self.discriminator = family.training_modules["discriminator"](model.config)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model, "discriminator": self.discriminator}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.lr
        return {
            "generator": torch.optim.Adam(self.model.parameters(), lr=lr),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr),
        }

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        image, mask = self.inputs(batch, step)
        weights = self.config.loss_weights
        normalize = self.model.normalize
        hole = 1.0 - mask
        with step.autocast():
            coarse, fine = step.modules["generator"](image, mask, stages=True)
            truth = normalize(image)
            coarse, fine = normalize(coarse.float()), normalize(fine.float())
            composite = fine * hole + truth * mask

        with step.autocast():
            fake = torch.cat([composite.detach(), hole], 1)
            pair = torch.cat([fake, torch.cat([truth, hole], 1)])
            fake_scores, real_scores = step.modules["discriminator"](pair).float().chunk(2)
            d_fake = F.relu(1.0 + fake_scores).mean()
            d_real = F.relu(1.0 - real_scores).mean()
        step.update("discriminator", d_fake + d_real)

        # The generator's adversarial term goes through the discriminator, frozen and unwrapped
        # (its weights get no gradient, so DDP has nothing to synchronise there).
        self.discriminator.requires_grad_(False)
        try:
            with step.autocast():
                adversarial = -self.discriminator(torch.cat([composite, hole], 1)).float().mean()
        finally:
            self.discriminator.requires_grad_(True)
        terms = {
            "stage1_l1_hole": masked_l1(coarse, truth, hole),
            "stage1_l1_valid": masked_l1(coarse, truth, mask),
            "stage2_l1_hole": masked_l1(fine, truth, hole),
            "stage2_l1_valid": masked_l1(fine, truth, mask),
        }
        total = weights["adversarial"] * adversarial
        for name, value in terms.items():
            total = total + weights[name.split("_", 1)[1]] * value
        step.update("generator", total)
        detached = {name: value.detach() for name, value in terms.items()}
        return {
            "loss": total.detach(),
            **detached,
            "adversarial": adversarial.detach(),
            "d_loss": (d_fake + d_real).detach(),
            "d_real": d_real.detach(),
            "d_fake": d_fake.detach(),
        }


# --------------------------------------------------------------------------- classification


@register_task("classification")
class ClassifyTask(Task):
    """Classifiers on an ImageFolder tree ``DATA/train/<class>/...`` and ``DATA/val/<class>/...``.

    Defaults are NVIDIA's ``main.py`` (PyTorch's ImageNet example): SGD lr 0.1,
    momentum 0.9, weight decay 1e-4, lr / 10 every 30 epochs, 90 epochs,
    RandomResizedCrop 224 + flip for training, Resize 256 + CenterCrop 224 for
    validation, cross-entropy. Every epoch ends with top-1/top-5 on ``val``; the
    best top-1 is kept as ``best.safetensors``. Logged per step: ``loss`` and the
    batch's ``top1`` (running training accuracy).
    """

    primary = "classifier"
    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {
            "lr": 0.1, "epochs": 90, "lr_schedule": "step", "lr_step": 30, "lr_gamma": 0.1,
            "momentum": 0.9, "weight_decay": 1e-4, "size": 224, "batch": 256, "log_every": 10,
            "save_every": 10**9,
        },
    }  # fmt: skip
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # A few minutes on 2 CPU cores: small crops, few epochs (examples/make_classify_demo.py).
        "demo": {
            "size": 64, "epochs": 12, "batch": 32, "lr": 0.05, "lr_step": 8, "workers": 1,
            "log_every": 5,
        },
    }  # fmt: skip
    best_metric: ClassVar[str | None] = "top1"

    def dataset(self) -> Dataset:
        from pconv_cli.data.classification import ImageFolderDataset

        root = Path(self.config.data)
        self._train = ImageFolderDataset(
            root / "train", size=self.config.size, train=True, seed=self.config.seed
        )
        self._val = ImageFolderDataset(
            root / "val", size=self.config.size, train=False, classes=self._train.classes
        )
        classes = self.model.config.num_classes
        if classes != len(self._train.classes):
            raise TrainingError(
                f"{root / 'train'} has {len(self._train.classes)} classes, the model "
                f"{classes} outputs (num_classes)"
            )
        return self._train

    @classmethod
    def preflight(cls, config: TrainConfig) -> None:
        from pconv_cli.data.classification import find_classes
        from pconv_cli.data.datasets import DataError

        root = Path(config.data)
        for part in ("train", "val"):
            if not (root / part).is_dir():
                raise DataError(
                    f"--data {root}: no {part}/ folder (expected {root}/train/<class>/... "
                    f"and {root}/val/<class>/...)"
                )
        if find_classes(root / "train") != find_classes(root / "val"):
            raise DataError(f"{root}/train and {root}/val have different class folders")

    def collate(self, items: list[dict]) -> dict:
        from pconv_cli.data.classification import collate_labelled

        return collate_labelled(items)

    def describe_data(self) -> str:
        return (
            f"{len(self._train)} images in {len(self._train.classes)} classes "
            f"(val {len(self._val)})"
        )

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"classes": self._train.classes}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        sgd = torch.optim.SGD(
            self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
        return {"classifier": sgd}

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        image = batch["image"].to(step.device, non_blocking=True, memory_format=step.memory_format)
        label = batch["label"].to(step.device, non_blocking=True)
        with step.autocast():
            logits = step.modules["classifier"](image)
        loss = F.cross_entropy(logits.float(), label)
        step.update("classifier", loss)
        top1 = (logits.detach().argmax(1) == label).float().mean() * 100
        return {"loss": loss.detach(), "top1": top1}

    def validate(self) -> dict[str, float]:
        from pconv_cli.evaluation.classification import evaluate_classifier

        result = evaluate_classifier(
            self.model, self._val, self._val.classes, batch_size=self.config.batch,
            device=self.device, workers=min(self.config.workers, 2),
        )  # fmt: skip
        return {"top1": result.top1, "top5": result.top5}
