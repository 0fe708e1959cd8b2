"""The classifiers' training task (``classification``): NVIDIA's / torchvision's ImageNet recipe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from pconv_cli.train.errors import TrainingError
from pconv_cli.train.tasks import StepContext, Task, register_task

if TYPE_CHECKING:
    from pconv_cli.train.config import TrainConfig

__all__ = ["ClassifyTask"]


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

        self._check_size()
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

    def _check_size(self) -> None:
        """A crop too small for the architecture is a usage error before training, not a
        torch RuntimeError in the first step (one image through the model, in eval mode)."""
        from pconv_cli.errors import UsageError, one_line

        size, training = self.config.size, self.model.training
        try:
            with torch.no_grad():
                self.model.eval()(torch.zeros(1, 3, size, size))
        except RuntimeError as exc:
            raise UsageError(
                f"--size {size} is too small for {self.config.arch} ({one_line(exc)})"
            ) from None
        finally:
            self.model.train(training)

    @staticmethod
    def collate(items: list[dict]) -> dict:
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
