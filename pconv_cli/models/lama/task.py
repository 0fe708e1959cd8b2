"""LaMa's training on pconv's loop: task ``lama`` (imported when training needs it).

A step is LaMa's two optimizer passes over one batch (PyTorch Lightning 1.2 runs the
generator's optimizer, then the discriminator's), with big-lama's loss configuration:

- generator (Adam, ``--lr``, LaMa 1e-3): the raw prediction ``G([image * (1 - hole),
  hole])``, never the composite, against the image: ``10 x L1`` on known pixels only
  (``l1_known``; ``l1_hole`` 0), ``10 x`` the non-saturating adversarial loss
  (``adversarial``), ``100 x`` discriminator feature matching (``feature_matching``)
  and ``30 x ResNetPL`` (``resnet_pl``: ADE20k ResNet50-dilated features); gradients
  clipped to norm 1 (LaMa's ``gradient_clip_val``);
- discriminator (Adam at a tenth of ``--lr``, LaMa 1e-4): a fresh prediction of the
  updated generator, non-saturating loss with R1 on real images (``r1`` 0.001) and the
  hole as the fake target (outside it the prediction counts as real); clipped to norm 1.

The discriminator sees RGB only, real and fake in separate calls (its BatchNorm
statistics per batch, as LaMa). ``--loss resnet_pl=0`` trains without the ADE20k
encoder (offline); otherwise it is downloaded once into torch.hub's cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pconv_cli.models.lama.losses import ResNetPL, fetch_ade20k_encoder, load_ade20k_encoder
from pconv_cli.train.gan import GANTask
from pconv_cli.train.losses import NonSaturatingR1, feature_matching_loss
from pconv_cli.train.tasks import StepContext, register_task

__all__ = ["LamaTask"]


@register_task("lama")
class LamaTask(GANTask):
    """See the module docstring. Stage 1 is LaMa's recipe from scratch; stage 2 (and
    ``pconv finetune``) continues ``--init`` (e.g. ``big-lama``) at a tenth of the rate."""

    stage_defaults: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        # LaMa: Adam 1e-3 / 1e-4, 40 epochs of 25,000 batches of 8 per GPU, 256 px crops,
        # thick strokes and boxes (configs/training/data/abl-04-256-mh-dist.yaml)
        1: {"lr": 1e-3, "steps": 1_000_000, "masks": "thick", "size": 256},
        # fine-tuning: pconv's choice (LaMa publishes no fine-tuning recipe)
        2: {"lr": 1e-4, "steps": 20_000, "masks": "thick"},
    }
    init_stages: ClassVar[frozenset[int]] = frozenset({2})
    finetune_stage: ClassVar[int] = 2
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # A few minutes on 2 CPU cores: a narrow net at 64 px, no ResNetPL (no download).
        "demo": {
            "model": {"ngf": 8, "n_blocks": 2, "ndf": 8, "disc_layers": 2},
            "size": 64,
            "batch": 4,
            "steps": 300,
            "lr": 1e-3,
            "workers": 1,
            "save_every": 100,
            "sample_every": 50,
            "log_every": 10,
            "loss_weights": {"resnet_pl": 0.0},
        },
    }
    loss_weights: ClassVar[Mapping[str, float]] = {
        "l1_known": 10.0,
        "l1_hole": 0.0,
        "adversarial": 10.0,
        "feature_matching": 100.0,
        "resnet_pl": 30.0,
        "r1": 0.001,
    }
    discriminator_lr_scale: ClassVar[float] = 0.1
    max_grad_norm: ClassVar[float] = 1.0

    def __init__(self, config, model: nn.Module, **kwargs: Any):
        super().__init__(config, model, **kwargs)  # the GAN base builds the discriminator
        self.weights = dict(config.loss_weights)
        self.adversarial = NonSaturatingR1(r1_weight=self.weights["r1"])
        self.resnet_pl: ResNetPL | None = None

    @classmethod
    def preflight(cls, config) -> None:
        super().preflight(config)
        if config.loss_weights.get("resnet_pl", cls.loss_weights["resnet_pl"]):
            fetch_ade20k_encoder()  # downloaded once here, not by every worker

    def prepare(self) -> None:
        if self.weights["resnet_pl"]:
            encoder = load_ade20k_encoder()  # downloaded once (the launcher did it under DDP)
            self.resnet_pl = ResNetPL(encoder).to(self.device).train()
        else:
            self.log("note: --loss resnet_pl=0: training without LaMa's perceptual loss "
                     "(ADE20k ResNet50-dilated features, weight 30 in LaMa's recipe)")  # fmt: skip
        super().prepare()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.lr
        d_group = {"params": list(self.discriminator.parameters()),
                   "lr_scale": self.discriminator_lr_scale}  # fmt: skip
        return {
            "generator": torch.optim.Adam(self.model.parameters(), lr=lr),
            "discriminator": torch.optim.Adam([d_group], lr=lr * self.discriminator_lr_scale),
        }

    def _generator_terms(
        self, predicted: Tensor, image: Tensor, valid: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """LaMa's ``generator_loss`` on the raw prediction (float32)."""
        w = self.weights
        error = (predicted - image).abs()
        terms = {
            "l1_known": (error * valid).mean(),  # LaMa's masked_l1_loss, weight_known part
            "l1_hole": (error * (1 - valid)).mean(),
        }
        # through the frozen, unwrapped discriminator: its weights get no gradient (DDP has
        # nothing to synchronise there); two calls as in LaMa (BatchNorm per batch)
        self.discriminator.requires_grad_(False)
        try:
            _, real_features = self.discriminator(image)
            fake_scores, fake_features = self.discriminator(predicted)
        finally:
            self.discriminator.requires_grad_(True)
        terms["adversarial"] = self.adversarial.generator_loss(fake_scores)
        real_features = [f.detach() for f in real_features]
        terms["feature_matching"] = feature_matching_loss(fake_features, real_features)
        if self.resnet_pl is not None:
            terms["resnet_pl"] = self.resnet_pl(predicted, image)
        total = sum(w[name] * value for name, value in terms.items())
        return total, terms

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        image, valid = self.inputs(batch, step)
        generator, discriminator = step.modules["generator"], step.modules["discriminator"]
        with step.autocast():
            predicted = generator(image, valid).float()
            g_loss, g_terms = self._generator_terms(predicted, image, valid)
        step.update("generator", g_loss, max_grad_norm=self.max_grad_norm)

        with torch.no_grad(), step.autocast():  # LaMa's discriminator pass predicts again
            fake = generator(image, valid).float()
        real = image.detach().float().requires_grad_(True)
        with step.autocast():
            real_scores, _ = discriminator(real)
            fake_scores, _ = discriminator(fake)
            d_loss, d_terms = self.adversarial.discriminator_loss(
                real_scores, fake_scores, real, fake_region=1 - valid
            )
        step.update("discriminator", d_loss, max_grad_norm=self.max_grad_norm)
        return {
            "loss": g_loss.detach(),
            **{name: value.detach() for name, value in g_terms.items()},
            "d_loss": d_loss.detach(),
            **d_terms,
        }
