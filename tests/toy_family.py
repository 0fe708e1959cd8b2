"""A toy inpainting family registered from outside pconv: proof that the seams hold.

It brings everything a second family needs, and touches no file of ``pconv_cli``:

- family ``toy_gan``: a tiny generator (returned as an ``InpaintingModel``) and a
  tiny discriminator that sees image + mask (``training_modules``);
- task ``toy_gan``: a GAN step on pconv's GAN base task: one discriminator update
  (hinge loss) then one generator update (L1 + adversarial), two Adam optimizers;
- converter ``toyformat``: a foreign checkpoint layout (``toy_generator.*`` and
  ``toy_critic.*`` keys) read by ``--weights`` and ``--init``.

Importing this module registers all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pconv_cli.models import InpaintingModel, composite, register_model
from pconv_cli.train import GANTask, StepContext, register_task
from pconv_cli.weights import register_converter

FAMILY = "toy_gan"


@dataclass(frozen=True)
class ToyConfig:
    """``width``: channels of the hidden layers."""

    width: int = 8
    normalization: str = "minus_one_one"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


class ToyGenerator(nn.Module):
    """Masked image + mask -> image, two 3x3 convs (any size)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1)
        )

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        return self.body(torch.cat([image * mask, mask], 1))


class ToyDiscriminator(nn.Module):
    """Image + mask -> a map of realness scores (stride 2)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, width, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 1, 3, padding=1),
        )

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        return self.body(torch.cat([image, mask], 1))


def build_discriminator(config: ToyConfig) -> nn.Module:
    return ToyDiscriminator(config.width)


@register_model(
    FAMILY,
    config=ToyConfig,
    task=FAMILY,
    training_modules={"discriminator": build_discriminator},
)
def toy_gan(config: ToyConfig) -> InpaintingModel:
    """A toy GAN inpainter (tests only)."""
    return InpaintingModel(
        ToyGenerator(config.width), family=FAMILY, config=config,
        normalization=config.normalization,
    )  # fmt: skip


@register_task(FAMILY)
class ToyGANTask(GANTask):
    """Discriminator step (hinge, GAN base), then generator step (L1 + 0.1 * adversarial)."""

    stage_defaults = {1: {"lr": 1e-3, "steps": 100}}  # noqa: RUF012
    presets = {"demo": {"model": {"width": 4}, "size": 32, "steps": 4}}  # noqa: RUF012
    loss_weights = {"l1": 1.0, "adversarial": 0.1}  # noqa: RUF012

    def training_step(self, batch: dict, step: StepContext) -> dict[str, Tensor]:
        image, mask = self.inputs(batch, step)
        generator = step.modules["generator"]
        weights = self.config.loss_weights
        with torch.no_grad():
            fake = composite(image, generator(image * mask, mask), mask)
        d_terms = self.discriminator_step(step, fake=fake, real=image, mask=mask)
        with step.autocast():
            output = generator(image * mask, mask)
            l1 = (output.float() - image).abs().mean()
        adversarial = self.generator_adversarial(step, composite(image, output, mask), mask)
        g_loss = weights["l1"] * l1 + weights["adversarial"] * adversarial
        step.update("generator", g_loss)
        return {"loss": g_loss.detach(), "l1": l1.detach(), "adversarial": adversarial.detach(),
                **d_terms}  # fmt: skip


def _is_toyformat(state) -> bool:
    return any(key.startswith("toy_generator.") for key in state)


def _convert_toyformat(state):
    converted = {}
    for key, value in state.items():
        if key.startswith("toy_generator."):
            converted[key.removeprefix("toy_generator.")] = value
        elif key.startswith("toy_critic."):
            converted["discriminator." + key.removeprefix("toy_critic.")] = value
    width = converted["body.0.weight"].shape[0]
    return converted, FAMILY, {"width": width}


register_converter("toyformat", detect=_is_toyformat, convert=_convert_toyformat)


def toyformat_file(path, *, width: int = 6, seed: int = 0):
    """Write a foreign ``toyformat`` checkpoint (torch.save, prefixed keys) and return it."""
    torch.manual_seed(seed)
    generator, critic = ToyGenerator(width), ToyDiscriminator(width)
    state = {f"toy_generator.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"toy_critic.{k}": v for k, v in critic.state_dict().items()})
    torch.save({"state_dict": state, "meta": {"iteration": 10}}, path)
    return path, generator, critic
