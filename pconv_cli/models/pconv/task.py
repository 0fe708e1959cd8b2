"""The PConv U-Net's training task (``pconv``, also for the plain ``unet``) and its presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from pconv_cli.train.errors import TrainingError
from pconv_cli.train.losses import InpaintingLoss, LossWeights, load_vgg16_features
from pconv_cli.train.tasks import InpaintingTask, StepContext, register_task

if TYPE_CHECKING:
    from pconv_cli.train.config import TrainConfig

__all__ = ["PConvTask"]


@register_task("pconv")
class PConvTask(InpaintingTask):
    """The PConv U-Net's training (Liu et al. 2018; MMagic's recipe), also for ``unet``.

    Loss: ``1*valid + 6*hole + 0.05*perceptual + 120*style + 0.1*TV`` (each term
    logged), one Adam. Stage 1 from scratch (lr 2e-4); stage 2 fine-tunes
    ``--init`` with lr 5e-5 and the encoder's BatchNorm frozen.
    """

    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"lr": 2e-4, "steps": 800_000, "freeze_encoder_bn": False},
        2: {"lr": 5e-5, "steps": 500_000, "freeze_encoder_bn": True},
        3: {"lr": 5e-5, "steps": 10_000, "freeze_encoder_bn": True},  # a further fine-tune
    }  # Step counts are MMagic's (Places365).
    init_stages: ClassVar[frozenset[int]] = frozenset({2, 3})
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
                # Stage 3 (--stage 3 --out RUN, from RUN/stage2): NVIDIA-like masks half
                # the time and an SSIM term that weighs every image alike, for the small
                # thin holes where the first two stages lost to Telea on real masks.
                3: {
                    "size": 128,  # stage 1's scale and cost: 4x the images of 256 px
                    "crop_size": 160,
                    "batch": 8,
                    "steps": 3_000,
                    "lr": 1e-4,
                    "masks": "mixed+occlusion",
                    # no L1 on known pixels (the composite replaces them): it made the
                    # last layer copy the centre pixel, leaving 1-2 px holes grey
                    "loss_weights": {"valid": 0.0, "tv": 6.0, "ssim": 0.5},
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
