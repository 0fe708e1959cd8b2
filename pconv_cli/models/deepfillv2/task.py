"""DeepFillv2's training task (``deepfillv2``): MMagic's two-stage GAN recipe and its presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from pconv_cli.train.gan import GANTask
from pconv_cli.train.losses import HingeGANLoss, masked_l1
from pconv_cli.train.tasks import StepContext, register_task

__all__ = ["DeepFillTask"]

_TERM_WEIGHTS = {  # logged term -> its weight in loss_weights (--loss NAME=W)
    "stage1_l1_hole": "l1_hole",
    "stage1_l1_valid": "l1_valid",
    "stage2_l1_hole": "l1_hole",
    "stage2_l1_valid": "l1_valid",
}


@register_task("deepfillv2")
class DeepFillTask(GANTask):
    """DeepFillv2's training (MMagic's ``TwoStageInpaintor`` recipe) on the generic trainer.

    Per step, after one generator forward: a discriminator update (hinge loss on
    the stage-2 composite and the truth, each with the hole mask) then a generator
    update: L1 over hole and over valid pixels for the stage-1 and stage-2 raw
    outputs (weight 1 each, each averaged over its pixels of the global batch) plus
    0.1 x the hinge adversarial loss on the stage-2 composite. Losses are computed
    on the network's normalised scale ([-1, 1]), as MMagic does; hinge terms and
    spectral norms run in float32. Adam at lr 1e-4 for both nets.

    Unlike MMagic, the discriminator sees the fake and the real batch in one call
    (DDP allows one forward per backward), so its spectral norms take one power
    iteration per step instead of two.
    """

    adversarial_loss = HingeGANLoss()
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
        d_terms = self.discriminator_step(step, fake=composite, real=truth, mask=hole)
        adversarial = self.generator_adversarial(step, composite, hole)
        terms = {
            "stage1_l1_hole": masked_l1(coarse, truth, hole),
            "stage1_l1_valid": masked_l1(coarse, truth, mask),
            "stage2_l1_hole": masked_l1(fine, truth, hole),
            "stage2_l1_valid": masked_l1(fine, truth, mask),
        }
        total = weights["adversarial"] * adversarial
        for name, value in terms.items():
            total = total + weights[_TERM_WEIGHTS[name]] * value
        step.update("generator", total)
        detached = {name: value.detach() for name, value in terms.items()}
        return {"loss": total.detach(), **detached, "adversarial": adversarial.detach(), **d_terms}

    def discriminate(self, discriminator: torch.nn.Module, images: Tensor, masks: Tensor) -> Tensor:
        return discriminator(torch.cat([images, masks], 1))
