"""The GAN base task: a generator (the model), a discriminator, their optimizers, a GAN loss.

A family's GAN task subclasses :class:`GANTask`, sets ``adversarial_loss`` (a
:class:`~pconv_cli.train.losses.AdversarialLoss` object: hinge, non-saturating,
...) and writes :meth:`~pconv_cli.train.tasks.Task.training_step` with two
helpers:

- :meth:`GANTask.discriminator_step`: one discriminator update on the fakes
  (detached) and the reals, scored in one call (DDP wants one forward per
  backward), returning its terms;
- :meth:`GANTask.generator_adversarial`: the generator's adversarial term,
  through the discriminator frozen and unwrapped (no gradient to its weights, so
  DDP has nothing to synchronise there).

The discriminator is the family's ``training_modules["discriminator"]``, built
from the model's config; both nets, both optimizers and their grad scalers are
checkpointed by the trainer. How the discriminator sees an image and its mask
is the family's :meth:`GANTask.discriminate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from pconv_cli.models.registry import get_family
from pconv_cli.train.losses import AdversarialLoss, HingeGANLoss
from pconv_cli.train.tasks import InpaintingTask, StepContext

if TYPE_CHECKING:
    from pconv_cli.train.config import TrainConfig

__all__ = ["GANTask"]


class GANTask(InpaintingTask):
    """Generator + discriminator (see the module docstring). Adam for both at ``--lr``."""

    adversarial_loss: ClassVar[AdversarialLoss] = HingeGANLoss()
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    """Adam's betas for both nets (PyTorch's defaults unless a family's recipe says)."""

    def __init__(self, config: TrainConfig, model: nn.Module, **kwargs: Any):
        super().__init__(config, model, **kwargs)
        builders = get_family(config.arch).training_modules
        if "discriminator" not in builders:
            raise TypeError(f"family {config.arch} registers no discriminator for its GAN task")
        self.discriminator = builders["discriminator"](model.config)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model, "discriminator": self.discriminator}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config.lr
        return {
            "generator": torch.optim.Adam(self.model.parameters(), lr=lr, betas=self.betas),
            "discriminator": torch.optim.Adam(
                self.discriminator.parameters(), lr=lr, betas=self.betas
            ),
        }

    def discriminate(self, discriminator: nn.Module, images: Tensor, masks: Tensor) -> Tensor:
        """Raw realness scores of ``images`` with their ``masks`` (the family's call)."""
        return discriminator(images, masks)

    def discriminator_step(
        self, step: StepContext, *, fake: Tensor, real: Tensor, mask: Tensor
    ) -> dict[str, Tensor]:
        """Update the discriminator on ``fake`` (detached) and ``real``, both with ``mask``.

        Returns the detached terms ``d_loss`` and the loss object's parts (``d_real``,
        ``d_fake``).
        """
        with step.autocast():
            images, masks = torch.cat([fake.detach(), real]), mask.repeat(2, 1, 1, 1)
            scores = self.discriminate(step.modules["discriminator"], images, masks)
            fake_scores, real_scores = scores.float().chunk(2)
            parts = self.adversarial_loss.discriminator(real_scores, fake_scores)
            loss = sum(parts.values())
        step.update("discriminator", loss)
        return {"d_loss": loss.detach(), **{name: v.detach() for name, v in parts.items()}}

    def generator_adversarial(self, step: StepContext, fake: Tensor, mask: Tensor) -> Tensor:
        """The generator's adversarial term for ``fake`` (gradients reach the generator only)."""
        self.discriminator.requires_grad_(False)
        try:
            with step.autocast():
                scores = self.discriminate(self.discriminator, fake, mask)
                return self.adversarial_loss.generator(scores)
        finally:
            self.discriminator.requires_grad_(True)
